"""The dashboard's HTTP plumbing: templates, its Content-Security-Policy, cookies, form
bodies, and the signed-in session every page but sign-in needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from paymentd.audit import context as audit_context
from paymentd.audit import failures as audit_failures
from paymentd.auth.keys import Scope
from paymentd.auth.middleware import check_account_limit
from paymentd.dashboard import sessions
from paymentd.errors import InvalidRequest, PaymentdError, PermissionDenied
from paymentd.money import Money
from paymentd.security_headers import DASHBOARD_CSP

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
PREFIX = "/dashboard"

CSP = DASHBOARD_CSP

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)

_env.filters["money"] = lambda minor, currency: Money.from_minor(minor, currency).to_api()

MAX_FIELDS = 20


class SignInRequired(Exception):
    """No live session: the page answers with the sign-in page instead (app-wide handler)."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason


def tls(request: Request) -> bool:
    # "https" under paymentd's own TLS, or behind a proxy it trusts (X-Forwarded-Proto).
    return request.url.scheme == "https"


def cookie_name(request: Request, base: str) -> str:
    """`__Host-` under TLS: the browser then insists on Secure, Path=/ and no Domain."""
    return f"__Host-{base}" if tls(request) else base


def set_cookie(response: Any, request: Request, base: str, value: str, *, max_age: int | None = None) -> None:
    secure = tls(request)
    response.set_cookie(cookie_name(request, base), value, max_age=max_age, path="/" if secure else PREFIX,
                        secure=secure, httponly=True, samesite="strict")


def clear_cookie(response: Any, request: Request, base: str) -> None:
    secure = tls(request)
    response.delete_cookie(cookie_name(request, base), path="/" if secure else PREFIX, secure=secure,
                           httponly=True, samesite="strict")


SESSION_COOKIE = "paymentd_dashboard"
LOGIN_COOKIE = "paymentd_dashboard_login"  # the sign-in form's CSRF token (double submit)


def render(request: Request, template: str, *, status: int = 200, session: sessions.Session | None = None,
           error: PaymentdError | None = None, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    page = _env.get_template(template).render(
        session=session, error=error, request_id=request.scope.get("state", {}).get("request_id", ""),
        prefix=PREFIX, path=request.url.path, **context)
    response = HTMLResponse(page, status_code=error.status if error is not None and status == 200 else status,
                            headers={"Content-Security-Policy": CSP, **(headers or {}), **(error.headers() if error else {})})
    return response


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form body as a dict; anything else is a 400 (no file uploads here)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise InvalidRequest("Send the form as application/x-www-form-urlencoded.", code="invalid_form")
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form could not be read.", code="invalid_form") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise InvalidRequest(f"The field `{name}` was sent twice.", code="invalid_form", param=name)
        fields[name] = value
    return fields


_SAFE_NEXT = re.compile(r"^/dashboard(/[A-Za-z0-9/_\-]*)?$")


def safe_next(raw: str | None) -> str:
    """Where to go after sign-in: a dashboard path only (no open redirect)."""
    return raw if raw and _SAFE_NEXT.match(raw) else PREFIX


async def current_session(request: Request) -> sessions.Session:
    settings = request.app.state.settings
    found = await sessions.resume(request.app.state.database, request.cookies.get(cookie_name(request, SESSION_COOKIE)),
                                  idle_s=settings.dashboard_idle_s, max_age_s=settings.dashboard_max_age_s)
    if isinstance(found, sessions.Ended):
        raise SignInRequired(found.reason)
    # Entries the pages' actions write name the key, as the API's do.
    audit_context.act_as(audit_context.Actor("api_key", str(found.principal.api_key_id)))
    await check_account_limit(request.scope, found.principal)  # the account's request limit counts these too
    return found


def csrf_checked(session: sessions.Session, fields: dict[str, str]) -> None:
    """Every POST: the form's token must be its session's (a synchronizer token)."""
    if not session.csrf_ok(fields.get("csrf")):
        raise PermissionDenied("This form is stale or was not sent by the dashboard (CSRF check failed); "
                               "reload the page and try again.", code="csrf_failed")


def needs(request: Request, session: sessions.Session, scope: Scope) -> None:
    """An action needs the scope its API call needs; a refusal is counted like the API's 403."""
    if not session.principal.allows(scope):
        audit_failures.note(request, 403, None, session.principal.account_id)
        raise PermissionDenied(f"This action needs an API key with the `{scope.value}` scope.", code="missing_scope")
