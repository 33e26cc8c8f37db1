"""The dashboard's pages and forms. Pages read through the services and queries the API
uses; actions call the very service methods the API routes call, as the signed-in key
(same checks, same audit entries, actor = the key). Each action also needs the scope
its API route needs (refund: refunds:write; capture, cancel: payments:write; revoking
a key: admin): the `dashboard` scope lets a person look, not act."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from paymentd.audit import failures as audit_failures
from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.auth.middleware import authenticate_key
from paymentd.dashboard import charts, fraud, overview, search, sessions, timeline, webhooks
from paymentd.dashboard.web import (
    LOGIN_COOKIE, PREFIX, SESSION_COOKIE, STATIC_DIR, SignInRequired, clear_cookie, cookie_name, csrf_checked,
    current_session, form, needs, render, safe_next, set_cookie,
)
from paymentd.errors import Conflict, InvalidRequest, NotFound, PaymentdError, PermissionDenied
from paymentd.payments.repository import encode_cursor
from paymentd.payments.schemas import PaymentCancel, PaymentCapture
from paymentd.payments.service import CANCELABLE
from paymentd.payments.states import PaymentStatus
from paymentd.refunds.schemas import RefundCreate
from paymentd.validation import validation_error

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 25
# A person waits longer than an application's budget: the outcome is worth seeing.
ACTION_WAIT_S = 5.0
SIGNED_OUT = {
    "idle": "You were signed out after a while without activity.",
    "expired": "Your session reached its maximum age; sign in again.",
    "key_revoked": "The API key of your session was revoked, expired or lost the dashboard scope.",
    "signed_out": "You are signed out.",
}
DONE = {
    "refund": "Refund requested.", "capture": "Payment captured.", "cancel": "Payment canceled.",
    "revoked": "API key revoked.",
    "approved": "Review approved: the payment is captured.",
    "denied": "Review denied: the payment is canceled, or refunded as fraudulent.",
}
REFUNDABLE = {PaymentStatus.succeeded, PaymentStatus.partially_refunded}
_FORM_SEED = uuid.UUID("6d1f0c52-77a8-4d7e-9d55-0f0c6a4d1e11")


def install_dashboard(app: FastAPI) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    app.include_router(router)
    app.include_router(fraud.router)
    app.include_router(webhooks.router)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, error: SignInRequired) -> Response:
        query = f"?next={request.url.path}" if request.method == "GET" else ""
        if error.reason:
            query += ("&" if query else "?") + f"reason={error.reason}"
        return RedirectResponse(f"{PREFIX}/login{query}", status_code=303)


def _rid(request: Request) -> str:
    return request.scope["state"]["request_id"]


# --- signing in and out -------------------------------------------------------------


def _login_page(request: Request, *, error: PaymentdError | None = None, notice: str | None = None,
                next_path: str | None = None) -> Response:
    token = sessions.new_token()
    response = render(request, "login.html", error=error, notice=notice, csrf=token, next_path=safe_next(next_path))
    set_cookie(response, request, LOGIN_COOKIE, token, max_age=3600)
    return response


@router.get("/login")
async def login_page(request: Request, reason: str | None = None, next: str | None = None) -> Response:
    return _login_page(request, notice=SIGNED_OUT.get(reason or ""), next_path=next)


@router.post("/login")
async def login(request: Request) -> Response:
    fields: dict[str, str] = {}
    try:
        fields = await form(request)
        sent, expected = fields.get("csrf", ""), request.cookies.get(cookie_name(request, LOGIN_COOKIE), "")
        if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise PermissionDenied("The sign-in form expired or was not sent by this page; try again.",
                                   code="csrf_failed")
        key = fields.get("key", "").strip()
        if not key:
            raise InvalidRequest("Enter an API key.", code="parameter_missing", param="key")
        principal = await authenticate_key(request.scope, key)
        if not sessions.may_sign_in(principal):
            audit_failures.note(request, 403, key, principal.account_id)
            raise PermissionDenied("This API key lacks the `dashboard` scope.", code="missing_scope")
        settings = request.app.state.settings
        token, _ = await sessions.open_session(request.app.state.database, principal, idle_s=settings.dashboard_idle_s,
                                               max_age_s=settings.dashboard_max_age_s)
    except PaymentdError as error:
        return _login_page(request, error=error, next_path=fields.get("next"))
    response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    set_cookie(response, request, SESSION_COOKIE, token)
    clear_cookie(response, request, LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await current_session(request)
    try:
        csrf_checked(session, await form(request))
    except PaymentdError as error:
        return render(request, "message.html", session=session, error=error)
    await sessions.close(request.app.state.database, session)
    response = RedirectResponse(f"{PREFIX}/login?reason=signed_out", status_code=303)
    clear_cookie(response, request, SESSION_COOKIE)
    return response


# --- pages ----------------------------------------------------------------------------


@router.get("")
async def overview_page(request: Request, days: str = "30") -> Response:
    session = await current_session(request)
    error = None
    if days not in {str(d) for d in overview.RANGES}:
        error = InvalidRequest(f"`days` is one of {', '.join(map(str, overview.RANGES))}.", code="parameter_invalid",
                               param="days")
        days = "30"
    state = request.app.state
    figures = await overview.overview(state.database, state.provider, session.principal.account_id, int(days))
    figures.extras = await _overview_extras(request, session)
    return render(request, "overview.html", session=session, error=error, o=figures, days=int(days),
                  ranges=overview.RANGES, volume_chart=charts.volume(figures.days),
                  rate_chart=charts.success_rate(figures.days))


async def _overview_extras(request: Request, session: sessions.Session) -> dict[str, Any]:
    """Figures of the other slices: open reviews (fraud/)."""
    reviews = await fraud.open_reviews(request.app.state.database, session.principal.account_id)
    return {"stats": [("Open reviews", reviews, "open-reviews")]}


@router.get("/payments")
async def payments_page(request: Request, q: str = "", status: str = "", date_from: str = "", date_to: str = "",
                        cursor: str = "") -> Response:
    session = await current_session(request)
    principal = session.principal
    filters = {"q": q, "status": status, "date_from": date_from, "date_to": date_to}
    rows: list[Any] = []
    has_more, error = False, None
    try:
        found = await search.find(request.app.state.database, principal.account_id, q, status, date_from, date_to)
        if found.payment_id is not None:
            return RedirectResponse(f"{PREFIX}/payments/{found.payment_id}", status_code=303)
        if not found.nothing:
            rows, has_more = await request.app.state.payments.history(principal, found.where, limit=PAGE_SIZE,
                                                                      cursor=cursor or None)
    except PaymentdError as caught:
        error = caught
    return render(request, "payments.html", session=session, error=error, rows=rows, filters=filters,
                  statuses=search.STATUSES, search_help=search.SEARCH_HELP,
                  next_cursor=encode_cursor(rows[-1]) if has_more and rows else None)


async def _payment_context(request: Request, session: sessions.Session, payment_id: str) -> dict[str, Any]:
    try:
        parsed = uuid.UUID(payment_id)
    except ValueError:
        raise NotFound("No such payment.", param="id") from None
    database = request.app.state.database
    view = await request.app.state.payments.get(session.principal, parsed)
    tried = await timeline.attempts(database, parsed)
    audited = await timeline.audit_entries(database, session.principal.account_id,
                                           [str(parsed), *(str(r.id) for r in view.refunds),
                                            *([str(view.payment.review["id"])] if view.payment.review else [])])
    warnings = await timeline.fraud_warnings(database, parsed)
    # Webhooks sent about the payment and the objects that hang off it.
    sent = await webhooks.sent_for(database, session.principal.account_id, [
        ("payment", str(parsed)), *(("refund", str(r.id)) for r in view.refunds),
        *(("dispute", str(d.id)) for d in view.disputes),
        *([("review", str(view.payment.review["id"]))] if view.payment.review else []),
        *(("early_fraud_warning", w["provider_warning_id"]) for w in warnings)])
    payment = view.payment
    return {
        "view": view, "p": payment,
        "items": timeline.build(view, tried, audited, warnings, sent),
        "can_capture": payment.status == PaymentStatus.requires_capture,
        "can_cancel": payment.status in CANCELABLE,
        "can_refund": payment.status in REFUNDABLE and payment.amount_received > payment.amount_refunded,
        "can_decide": session.principal.allows(Scope.payments_write),
        "form_id": uuid.uuid4().hex,
    }


@router.get("/payments/{payment_id}")
async def payment_page(request: Request, payment_id: str, done: str = "", pending: str = "") -> Response:
    session = await current_session(request)
    try:
        context = await _payment_context(request, session, payment_id)
    except PaymentdError as error:
        return render(request, "message.html", session=session, error=error)
    notice = DONE.get(done)
    if notice and pending:
        notice += " Stripe is still working on it: reload in a moment."
    return render(request, "payment.html", session=session, notice=notice, **context)


Action = Callable[[sessions.Session, dict[str, str], uuid.UUID], Awaitable[bool]]


async def _act(request: Request, payment_id: str, done: str, scope: Scope, action: Action) -> Response:
    """CSRF, scope, then the service call; errors re-render the payment page with the message."""
    session = await current_session(request)
    try:
        fields = await form(request)
        csrf_checked(session, fields)
        needs(request, session, scope)
        try:
            parsed = uuid.UUID(payment_id)
        except ValueError:
            raise NotFound("No such payment.", param="id") from None
        try:
            accepted = await action(session, fields, parsed)
        except ValidationError as invalid:
            raise validation_error(invalid.errors()) from None
    except PaymentdError as error:
        try:
            context = await _payment_context(request, session, payment_id)
        except PaymentdError:
            return render(request, "message.html", session=session, error=error)
        return render(request, "payment.html", session=session, error=error, **context)
    suffix = "&pending=1" if accepted else ""
    return RedirectResponse(f"{PREFIX}/payments/{payment_id}?done={done}{suffix}", status_code=303)


def _optional(fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name, "").strip()
    return value or None


@router.post("/payments/{payment_id}/refund")
async def refund(request: Request, payment_id: str) -> Response:
    async def run(session: sessions.Session, fields: dict[str, str], parsed: uuid.UUID) -> bool:
        body = RefundCreate(payment_id=parsed, amount=_optional(fields, "amount"), reason=_optional(fields, "reason"))
        form_id = fields.get("form_id", "")
        # One refund per rendered form, however often it is submitted (a double click).
        seed = uuid.uuid5(_FORM_SEED, f"{session.id}:{form_id}") if 0 < len(form_id) <= 64 else None
        outcome = await request.app.state.refunds.create(session.principal, body, _rid(request), seed=seed,
                                                         wait_s=ACTION_WAIT_S)
        return outcome.accepted

    return await _act(request, payment_id, "refund", Scope.refunds_write, run)


@router.post("/payments/{payment_id}/capture")
async def capture(request: Request, payment_id: str) -> Response:
    async def run(session: sessions.Session, fields: dict[str, str], parsed: uuid.UUID) -> bool:
        body = PaymentCapture(payment_id=parsed, amount=_optional(fields, "amount"))
        return (await request.app.state.payments.capture(session.principal, body, _rid(request),
                                                         wait_s=ACTION_WAIT_S)).accepted

    return await _act(request, payment_id, "capture", Scope.payments_write, run)


@router.post("/payments/{payment_id}/cancel")
async def cancel(request: Request, payment_id: str) -> Response:
    async def run(session: sessions.Session, fields: dict[str, str], parsed: uuid.UUID) -> bool:
        body = PaymentCancel(payment_id=parsed, reason=_optional(fields, "reason"))
        return (await request.app.state.payments.cancel(session.principal, body, _rid(request),
                                                        wait_s=ACTION_WAIT_S)).accepted

    return await _act(request, payment_id, "cancel", Scope.payments_write, run)


# --- API keys ---------------------------------------------------------------------------


async def _keys(request: Request, session: sessions.Session) -> list[Any]:
    async with request.app.state.database.sql_connection() as conn:
        return list(await conn.fetch(
            "SELECT id, prefix, name, scopes, created_at, expires_at, last_used_at, revoked_at,"
            " expires_at IS NOT NULL AND expires_at <= clock_timestamp() AS expired"
            " FROM api_keys WHERE account_id = $1 ORDER BY created_at, id", session.principal.account_id))


@router.get("/keys")
async def keys_page(request: Request, done: str = "") -> Response:
    session = await current_session(request)
    return render(request, "keys.html", session=session, keys=await _keys(request, session), notice=DONE.get(done),
                  can_revoke=session.principal.allows(Scope.admin))


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    session = await current_session(request)
    try:
        csrf_checked(session, await form(request))
        needs(request, session, Scope.admin)
        try:
            parsed = uuid.UUID(key_id)
        except ValueError:
            raise NotFound("No such API key.", param="id") from None
        async with request.app.state.database.transaction() as db:
            row = await auth_service.find_key(db, str(parsed))
            if row is None or row.account_id != session.principal.account_id:
                raise NotFound("No such API key.", param="id")  # another account's key does not exist here
            if await auth_service.revoke_key(db, str(parsed)) is None:
                raise Conflict("This API key is revoked already.", code="invalid_state")
    except PaymentdError as error:
        return render(request, "keys.html", session=session, error=error, keys=await _keys(request, session),
                      can_revoke=session.principal.allows(Scope.admin))
    return RedirectResponse(f"{PREFIX}/keys?done=revoked", status_code=303)
