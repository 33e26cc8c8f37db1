"""The dashboard's webhook pages: the account's endpoints, each one's delivery log, and
the actions the API offers on them (pause, resume, redeliver), all with scope `admin` as there,
through the same `Endpoints` service. Secrets are never shown: create and rotate them
through the API, which shows a secret once."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from paymentd.auth.keys import Scope
from paymentd.dashboard import sessions
from paymentd.dashboard.web import PREFIX, csrf_checked, current_session, form, needs, render
from paymentd.errors import NotFound, PaymentdError

router = APIRouter(prefix=f"{PREFIX}/webhooks", include_in_schema=False)
PAGE_SIZE = 25
DONE = {"paused": "Endpoint paused.", "resumed": "Endpoint resumed: held deliveries go out in order.",
        "retried": "Delivery queued to be sent again."}


def _id(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"No such {what}.", param="id") from None


@router.get("")
async def endpoints_page(request: Request) -> Response:
    session = await current_session(request)
    try:
        needs(request, session, Scope.admin)
    except PaymentdError as error:
        return render(request, "message.html", session=session, error=error)
    rows = await request.app.state.endpoints.list(session.principal.account_id)
    return render(request, "webhooks.html", session=session, endpoints=rows)


async def _endpoint_context(request: Request, session: sessions.Session, endpoint_id: str,
                            cursor: str | None) -> dict[str, Any]:
    needs(request, session, Scope.admin)  # as in the API: a URL may carry the merchant's own token
    service = request.app.state.endpoints
    parsed = _id(endpoint_id, "webhook endpoint")
    endpoint = await service.get(session.principal.account_id, parsed)
    rows, more = await service.deliveries(session.principal.account_id, parsed, limit=PAGE_SIZE, cursor=cursor)
    return {"endpoint": endpoint, "deliveries": rows, "can_act": session.principal.allows(Scope.admin),
            "next_cursor": str(rows[-1][0].id) if more and rows else None}


@router.get("/{endpoint_id}")
async def endpoint_page(request: Request, endpoint_id: str, cursor: str = "", done: str = "") -> Response:
    session = await current_session(request)
    try:
        context = await _endpoint_context(request, session, endpoint_id, cursor or None)
    except PaymentdError as error:
        return render(request, "message.html", session=session, error=error)
    return render(request, "webhook.html", session=session, notice=DONE.get(done), **context)


async def _act(request: Request, endpoint_id: str, done: str, run: Any) -> Response:
    session = await current_session(request)
    try:
        csrf_checked(session, await form(request))
        needs(request, session, Scope.admin)
        await run(session.principal.account_id, _id(endpoint_id, "webhook endpoint"))
    except PaymentdError as error:
        try:
            context = await _endpoint_context(request, session, endpoint_id, None)
        except PaymentdError:
            return render(request, "message.html", session=session, error=error)
        return render(request, "webhook.html", session=session, error=error, **context)
    return RedirectResponse(f"{PREFIX}/webhooks/{endpoint_id}?done={done}", status_code=303)


@router.post("/{endpoint_id}/pause")
async def pause(request: Request, endpoint_id: str) -> Response:
    return await _act(request, endpoint_id, "paused", request.app.state.endpoints.pause)


@router.post("/{endpoint_id}/resume")
async def resume(request: Request, endpoint_id: str) -> Response:
    return await _act(request, endpoint_id, "resumed", request.app.state.endpoints.resume)


@router.post("/{endpoint_id}/deliveries/{delivery_id}/retry")
async def retry(request: Request, endpoint_id: str, delivery_id: str) -> Response:
    async def run(account_id: uuid.UUID, parsed: uuid.UUID) -> None:
        await request.app.state.endpoints.redeliver(account_id, parsed, _id(delivery_id, "delivery"))

    return await _act(request, endpoint_id, "retried", run)


async def sent_for(database: Any, account_id: uuid.UUID, objects: list[tuple[str, str]]) -> list[Any]:
    """Outbound events about these objects ((object_type, object_id) pairs), each with
    how its deliveries stand: succeeded, given up (`failed`), out of all."""
    if not objects:
        return []
    async with database.sql_connection() as conn:
        return list(await conn.fetch(
            "SELECT e.id, e.type, e.sequence, e.object_type, e.object_id, e.created_at,"
            " count(d.id) AS deliveries, count(d.id) FILTER (WHERE d.status = 'succeeded') AS delivered,"
            " count(d.id) FILTER (WHERE d.status = 'failed') AS given_up"
            " FROM outbound_events e LEFT JOIN webhook_deliveries d ON d.event_id = e.id"
            " WHERE e.account_id = $1"
            " AND (e.object_type, e.object_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))"
            " GROUP BY e.id ORDER BY e.created_at, e.id",
            account_id, [t for t, _ in objects], [i for _, i in objects]))
