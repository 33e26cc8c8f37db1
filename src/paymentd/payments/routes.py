"""HTTP routes of /api/payments: parse -> service -> schema. No SQL, no Stripe."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.deps import WaitBudget, idempotency_seed, request_id, require
from paymentd.disputes.schemas import present_dispute
from paymentd.fraud.schemas import present_warning
from paymentd.http import ExactJSONRoute
from paymentd.payments import service as payments
from paymentd.payments.models import PaymentEvent
from paymentd.payments.repository import encode_cursor
from paymentd.payments.schemas import (
    PaymentCancel,
    PaymentCapture,
    PaymentConfirm,
    PaymentCreate,
    PaymentDetailOut,
    PaymentEventOut,
    PaymentOut,
    PaymentPage,
    present_payment,
)
from paymentd.refunds.schemas import present_refund
from paymentd.schemas import API_ERRORS, error_responses

router = APIRouter(prefix="/api/payments", tags=["payments"], route_class=ExactJSONRoute, responses=API_ERRORS)


async def get_service(request: Request) -> payments.PaymentService:
    return request.app.state.payments


Service = Annotated[payments.PaymentService, Depends(get_service)]
RequestId = Annotated[str, Depends(request_id)]


present = present_payment  # the payment object of API.md, also in outbound webhooks


def present_event(event: PaymentEvent) -> PaymentEventOut:
    return PaymentEventOut(from_=event.from_status, to=event.to_status, at=event.created_at, source=event.source)


Seed = Annotated[uuid.UUID | None, Depends(idempotency_seed)]
Writer = Annotated[Principal, Depends(require(Scope.payments_write))]
def answer(outcome: payments.Outcome, response: Response) -> PaymentOut:
    if outcome.accepted:
        response.status_code = 202
    return present(outcome.payment)


@router.post("/create", status_code=201, response_model=PaymentOut)
async def create_payment(
    body: PaymentCreate, service: Service, rid: RequestId, seed: Seed, wait_s: WaitBudget, principal: Writer
) -> PaymentOut:
    return present((await service.create(principal, body, rid, seed=seed, wait_s=wait_s)).payment)


@router.post(
    "/confirm",
    response_model=PaymentOut,
    responses={202: {"model": PaymentOut, "description": "Stripe still working"}, **error_responses(402)},
)
async def confirm_payment(
    body: PaymentConfirm,
    service: Service,
    rid: RequestId,
    seed: Seed,
    wait_s: WaitBudget,
    principal: Writer,
    response: Response,
) -> PaymentOut:
    return answer(await service.confirm(principal, body, rid, seed=seed, wait_s=wait_s), response)


@router.post("/capture", response_model=PaymentOut, responses={202: {"model": PaymentOut, "description": "Stripe still working"}})
async def capture_payment(
    body: PaymentCapture, service: Service, rid: RequestId, wait_s: WaitBudget, principal: Writer, response: Response
) -> PaymentOut:
    return answer(await service.capture(principal, body, rid, wait_s=wait_s), response)


@router.post("/cancel", response_model=PaymentOut, responses={202: {"model": PaymentOut, "description": "Stripe still working"}})
async def cancel_payment(
    body: PaymentCancel, service: Service, rid: RequestId, wait_s: WaitBudget, principal: Writer, response: Response
) -> PaymentOut:
    return answer(await service.cancel(principal, body, rid, wait_s=wait_s), response)


@router.get("/history", response_model=PaymentPage)
async def payment_history(
    service: Service,
    principal: Principal = Depends(require(Scope.payments_read)),
    user_id: uuid.UUID | None = None,
    status: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> PaymentPage:
    where = payments.history_filter(user_id, status, created_gte, created_lt)
    rows, has_more = await service.history(principal, where, limit=limit, cursor=cursor)
    return PaymentPage(
        data=[present(p) for p in rows],
        has_more=has_more,
        next_cursor=encode_cursor(rows[-1]) if has_more else None,
    )


@router.get("/{payment_id}", response_model=PaymentDetailOut)
async def get_payment(
    payment_id: uuid.UUID,
    service: Service,
    principal: Principal = Depends(require(Scope.payments_read)),
) -> PaymentDetailOut:
    view = await service.get(principal, payment_id)
    return PaymentDetailOut(
        **present(view.payment).model_dump(),
        refunds=[present_refund(r).model_dump(mode="json") for r in view.refunds],
        events=[present_event(e) for e in view.events],
        disputes=[present_dispute(d) for d in view.disputes],
        early_fraud_warnings=[present_warning(w) for w in view.early_fraud_warnings],
    )
