"""HTTP routes of /api/users/{id}/payment-methods: parse -> service -> schema."""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.deps import WaitBudget, get_database, get_provider, require
from paymentd.errors import ProviderUnavailable
from paymentd.http import ExactJSONRoute
from paymentd.payments.background import Background
from paymentd.providers.base import PaymentProvider
from paymentd.schemas import API_ERRORS, PaymentMethodId, RequestModel
from paymentd.users import payment_methods
from paymentd.users.payment_methods import SavedPaymentMethod

router = APIRouter(
    prefix="/api/users/{user_id}/payment-methods", tags=["users"], route_class=ExactJSONRoute, responses=API_ERRORS
)


class PaymentMethodSave(RequestModel):
    payment_method: PaymentMethodId


class CardOut(BaseModel):
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class PaymentMethodOut(BaseModel):
    id: str
    type: str
    card: CardOut | None
    # "Visa ••••4242", "SEPA Direct Debit ••••3000": brand or bank and last 4 only.
    label: str | None
    created_at: datetime


class PaymentMethodList(BaseModel):
    data: list[PaymentMethodOut]
    has_more: bool = False  # Stripe's list shape; a user's methods always fit one page


async def within_budget(work: Coroutine[Any, Any, SavedPaymentMethod], wait_s: float, request: Request) -> SavedPaymentMethod:
    """Stripe slower than the budget: the work finishes in the background (each Stripe
    call is keyed by the user and method, so a retry repeats it harmlessly) and the
    caller is asked to retry rather than kept waiting."""
    task = request.app.state.payments.background.spawn(work)
    if not await Background.within(task, wait_s):
        raise ProviderUnavailable("The payment processor is slow; retry shortly with the same request.",
                                  status=503, retry_after=1, code="processor_slow")
    return task.result()


def present(row: SavedPaymentMethod) -> PaymentMethodOut:
    card = None
    if row.type == "card" and row.brand and row.last4:
        card = CardOut(brand=row.brand, last4=row.last4, exp_month=row.exp_month or 0, exp_year=row.exp_year or 0)
    return PaymentMethodOut(id=row.provider_payment_method_id, type=row.type, card=card, label=row.label,
                            created_at=row.created_at)


DatabaseDep = Annotated[Database, Depends(get_database)]
ProviderDep = Annotated[PaymentProvider, Depends(get_provider)]
PmId = Annotated[str, Path(pattern=r"^pm_[A-Za-z0-9_]{1,200}$")]


@router.post("", status_code=201, response_model=PaymentMethodOut)
async def save_payment_method(
    user_id: uuid.UUID,
    body: PaymentMethodSave,
    database: DatabaseDep,
    provider: ProviderDep,
    wait_s: WaitBudget,
    request: Request,
    principal: Principal = Depends(require(Scope.payments_write)),
) -> PaymentMethodOut:
    return present(await within_budget(
        payment_methods.save(database, provider, principal, user_id, body.payment_method), wait_s, request))


@router.get("", response_model=PaymentMethodList)
async def list_payment_methods(
    user_id: uuid.UUID, database: DatabaseDep, principal: Principal = Depends(require(Scope.payments_read))
) -> PaymentMethodList:
    return PaymentMethodList(data=[present(r) for r in await payment_methods.list_for(database, principal, user_id)])


@router.delete("/{pm_id}", response_model=PaymentMethodOut)
async def detach_payment_method(
    user_id: uuid.UUID,
    pm_id: PmId,
    database: DatabaseDep,
    provider: ProviderDep,
    wait_s: WaitBudget,
    request: Request,
    principal: Principal = Depends(require(Scope.payments_write)),
) -> PaymentMethodOut:
    return present(await within_budget(
        payment_methods.detach(database, provider, principal, user_id, pm_id), wait_s, request))
