"""The dashboard's reviews: the account's reviews (open first by default) with approve
and deny, through the same ReviewService as /api/reviews (scope payments:write, as
there). A decision lands on the payment's page, which shows the outcome."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from paymentd.auth.keys import Scope
from paymentd.dashboard.web import PREFIX, csrf_checked, current_session, form, needs, render
from paymentd.errors import NotFound, PaymentdError
from paymentd.fraud.models import REVIEW_STATUSES
from paymentd.fraud.service import encode_cursor

router = APIRouter(prefix=f"{PREFIX}/reviews", include_in_schema=False)
PAGE_SIZE = 25
# A person waits longer than an application's budget: the outcome is worth seeing.
DECISION_WAIT_S = 5.0


async def open_reviews(database: Any, account_id: uuid.UUID) -> int:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT count(*) FROM reviews WHERE account_id = $1 AND status = 'open'",
                                   account_id)


@router.get("")
async def reviews_page(request: Request, status: str = "open", cursor: str = "") -> Response:
    session = await current_session(request)
    rows: list[Any] = []
    has_more, error = False, None
    try:
        rows, has_more = await request.app.state.reviews.list(
            session.principal.account_id, status=status or None, limit=PAGE_SIZE, cursor=cursor or None)
    except PaymentdError as caught:
        error = caught
    return render(request, "reviews.html", session=session, error=error, reviews=rows, review_status=status,
                  statuses=REVIEW_STATUSES, can_decide=session.principal.allows(Scope.payments_write),
                  next_cursor=encode_cursor(rows[-1]) if has_more and rows else None)


async def _decide(request: Request, review_id: str, decision: str) -> Response:
    session = await current_session(request)
    service = request.app.state.reviews
    try:
        csrf_checked(session, await form(request))
        needs(request, session, Scope.payments_write)
        try:
            parsed = uuid.UUID(review_id)
        except ValueError:
            raise NotFound("No such review.", param="id") from None
        decide = service.approve if decision == "approve" else service.deny
        outcome = await decide(session.principal, parsed, request.scope["state"]["request_id"],
                               wait_s=DECISION_WAIT_S)
    except PaymentdError as error:
        rows, _ = await service.list(session.principal.account_id, status="open", limit=PAGE_SIZE, cursor=None)
        return render(request, "reviews.html", session=session, error=error, reviews=rows, review_status="open",
                      statuses=REVIEW_STATUSES, can_decide=session.principal.allows(Scope.payments_write),
                      next_cursor=None)
    done = "approved" if decision == "approve" else "denied"
    pending = "&pending=1" if outcome.accepted else ""
    return RedirectResponse(f"{PREFIX}/payments/{outcome.payment.id}?done={done}{pending}", status_code=303)


@router.post("/{review_id}/approve")
async def approve(request: Request, review_id: str) -> Response:
    return await _decide(request, review_id, "approve")


@router.post("/{review_id}/deny")
async def deny(request: Request, review_id: str) -> Response:
    return await _decide(request, review_id, "deny")
