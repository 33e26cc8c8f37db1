"""Fixed paths keep their methods: `GET /api/payments/create` is a 405 with `Allow: POST`.

The router tries routes in order and takes the first full match, so without this a
fixed POST-only path (`/api/payments/create`) asked with GET falls through to a
parameterised GET route (`/api/payments/{payment_id}`) and answers a confusing
"not a valid UUID". A path declared without parameters is matched here first: any
other method gets the contract's 405 envelope naming the methods it takes.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from paymentd.errors import MethodNotAllowed
from paymentd.http import ROUTE_LABEL, send_error


def fixed_paths(openapi: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Each parameterless path of the API's OpenAPI document with the methods it takes
    (HEAD with GET). The document, not the router's internals: it is public and stable."""
    found: dict[str, frozenset[str]] = {}
    for path, operations in openapi.get("paths", {}).items():
        if "{" in path:
            continue
        methods = {m.upper() for m in operations if m.lower() in _METHODS}
        if "GET" in methods:
            methods.add("HEAD")
        found[path] = frozenset(methods)
    return found


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class FixedPathMethods:
    """Pure ASGI, innermost: authentication and the inbound limits have run already."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._paths: dict[str, frozenset[str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._paths is None:  # every route is declared by the first request
                self._paths = fixed_paths(scope["app"].openapi())
            methods = self._paths.get(scope["path"])
            if methods is not None and scope["method"] not in methods:
                scope[ROUTE_LABEL] = scope["path"]  # a declared path: its own template
                error = MethodNotAllowed(scope["method"], sorted(methods))
                await send_error(send, error, scope["state"]["request_id"])
                return
        await self.app(scope, receive, send)
