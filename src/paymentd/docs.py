"""/docs served entirely by paymentd (API.md "Operations": no CDN), so its HTML can
carry a CSP that allows nothing from other hosts: Swagger UI's files come from the
pinned fastapi-offline package, and the page's one inline script is allowed by hash."""

from __future__ import annotations

import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from paymentd.security_headers import csp_hash, html_csp

# The package's own folder of Swagger UI files (swagger-ui-bundle.js, swagger-ui.css, favicon.png).
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"


def install_docs(app: FastAPI, *, path: str = "/docs") -> None:
    """The Swagger UI page at `path` (the app is built with docs_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        swagger_ui_parameters=app.swagger_ui_parameters,
    ).body.decode()
    scripts = tuple(csp_hash(s) for s in re.findall(r"<script>(.*?)</script>", page, re.S))
    csp = html_csp(script_hashes=scripts, own_assets=True)

    @app.get(path, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": csp})
