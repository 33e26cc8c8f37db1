"""HTTP routes of /api/reviews (API.md "Fraud"): parse -> service -> schema. No SQL, no Stripe."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.deps import WaitBudget, request_id, require
from paymentd.fraud import reviews
from paymentd.fraud.models import Review
from paymentd.fraud.schemas import ReviewListItem, ReviewPage
from paymentd.fraud.service import Decided, ReviewService, encode_cursor
from paymentd.http import ExactJSONRoute
from paymentd.payments.routes import present as present_payment
from paymentd.payments.schemas import PaymentOut
from paymentd.schemas import API_ERRORS

router = APIRouter(prefix="/api/reviews", tags=["fraud"], route_class=ExactJSONRoute, responses=API_ERRORS)


async def get_reviews(request: Request) -> ReviewService:
    return request.app.state.reviews


Reviews = Annotated[ReviewService, Depends(get_reviews)]
Writer = Annotated[Principal, Depends(require(Scope.payments_write))]


class ReviewDecisionOut(ReviewListItem):
    # The payment after the decision (captured, canceled or refunded; `processing` with 202).
    payment: PaymentOut


def present(review: Review) -> ReviewListItem:
    return ReviewListItem(**reviews.present(review), payment_id=review.payment_id)


def decided(outcome: Decided, response: Response) -> ReviewDecisionOut:
    if outcome.accepted:
        response.status_code = 202
    return ReviewDecisionOut(**present(outcome.review).model_dump(), payment=present_payment(outcome.payment))


@router.get("", response_model=ReviewPage)
async def list_reviews(
    service: Reviews,
    principal: Writer,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> ReviewPage:
    rows, has_more = await service.list(principal.account_id, status=status, limit=limit, cursor=cursor)
    return ReviewPage(data=[present(r) for r in rows], has_more=has_more,
                      next_cursor=encode_cursor(rows[-1]) if has_more else None)


_DECISION = {202: {"model": ReviewDecisionOut, "description": "Stripe still working on the payment"}}


@router.post("/{review_id}/approve", response_model=ReviewDecisionOut, responses=_DECISION)
async def approve_review(
    review_id: uuid.UUID, service: Reviews, principal: Writer, wait_s: WaitBudget, response: Response,
    rid: Annotated[str, Depends(request_id)],
) -> ReviewDecisionOut:
    return decided(await service.approve(principal, review_id, rid, wait_s=wait_s), response)


@router.post("/{review_id}/deny", response_model=ReviewDecisionOut, responses=_DECISION)
async def deny_review(
    review_id: uuid.UUID, service: Reviews, principal: Writer, wait_s: WaitBudget, response: Response,
    rid: Annotated[str, Depends(request_id)],
) -> ReviewDecisionOut:
    return decided(await service.deny(principal, review_id, rid, wait_s=wait_s), response)
