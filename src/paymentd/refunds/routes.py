"""HTTP route of POST /api/payments/refund: parse -> service -> schema. No SQL, no Stripe."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.deps import WaitBudget, idempotency_seed, request_id, require
from paymentd.http import ExactJSONRoute
from paymentd.refunds.schemas import RefundCreate, RefundOut, present_refund
from paymentd.refunds.service import RefundService
from paymentd.schemas import API_ERRORS

router = APIRouter(prefix="/api/payments", tags=["refunds"], route_class=ExactJSONRoute, responses=API_ERRORS)


async def get_refunds(request: Request) -> RefundService:
    return request.app.state.refunds


Refunds = Annotated[RefundService, Depends(get_refunds)]


@router.post(
    "/refund",
    status_code=201,
    response_model=RefundOut,
    responses={202: {"model": RefundOut, "description": "Stripe still working: the refund is pending"}},
)
async def refund_payment(
    body: RefundCreate,
    service: Refunds,
    response: Response,
    wait_s: WaitBudget,
    rid: Annotated[str, Depends(request_id)],
    seed: Annotated[uuid.UUID | None, Depends(idempotency_seed)],
    principal: Principal = Depends(require(Scope.refunds_write)),
) -> RefundOut:
    outcome = await service.create(principal, body, rid, seed=seed, wait_s=wait_s)
    if outcome.accepted:
        response.status_code = 202
    return present_refund(outcome.refund)
