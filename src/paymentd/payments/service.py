"""Payment use cases: create, confirm, capture, cancel, read, and applying what Stripe says.

Each step is written down before it is done: the attempt row is committed
before the Stripe call, no transaction is held open across a Stripe call, and
every status change goes through `states.transition()` with its source.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.errors import (
    CardDeclined,
    Conflict,
    InvalidRequest,
    NotFound,
    ProviderUnavailable,
)
from paymentd.logs import log
from paymentd.money import Money
from paymentd.payments import repository, sync
from paymentd.payments.models import Payment, PaymentAttempt, PaymentEvent
from paymentd.payments.schemas import (
    PaymentCancel,
    PaymentCapture,
    PaymentConfirm,
    PaymentCreate,
)
from paymentd.payments.states import (
    PaymentStatus,
    can_move,
)
from paymentd.payments.sync import Actor
from paymentd.providers import base as provider_types
from paymentd.providers.base import PaymentProvider, ProviderPayment, ProviderStatus
from paymentd.users.models import User

CONFIRMABLE = {PaymentStatus.requires_payment_method, PaymentStatus.requires_confirmation}
CANCELABLE = {
    PaymentStatus.requires_payment_method,
    PaymentStatus.requires_confirmation,
    PaymentStatus.requires_action,
    PaymentStatus.requires_capture,
}

# Statuses that change at Stripe without a call from us (customer authentication,
# bank settlement); reading such a payment asks Stripe first.
REFRESH_ON_READ = {PaymentStatus.requires_action, PaymentStatus.processing}


def _api_actor(principal: Principal, request_id: str) -> Actor:
    return Actor("api", principal.api_key_id, request_id)


def stripe_key(payment_id: uuid.UUID, operation: str, *parts: object) -> str:
    """Idempotency key for a Stripe call, derived only from paymentd's own ids,
    so a retry, a restart or a second worker repeats the same call, never a new one."""
    return ":".join(["paymentd", str(payment_id), operation, *map(str, parts)])


@dataclass(frozen=True)
class PaymentView:
    payment: Payment
    events: Sequence[PaymentEvent]


class PaymentService:
    def __init__(self, database: Database, provider: PaymentProvider, *, read_budget_s: float = 0.3) -> None:
        self.database = database
        self.provider = provider
        self.read_budget_s = read_budget_s

    # ------------------------------------------------------------------ create

    async def create(self, principal: Principal, data: PaymentCreate, request_id: str) -> Payment:
        money = Money.parse(data.amount, data.currency)
        async with self.database.transaction() as session:
            user = await session.scalar(
                select(User).where(User.id == data.user_id, User.account_id == principal.account_id)
            )
        if user is None:
            raise NotFound("No such user.", param="user_id")
        payment_id = uuid.uuid4()
        # Stripe first, then one insert: a failure leaves no half-made payment,
        # and an unconfirmed PaymentIntent left behind by a crash can never charge.
        intent = await self._call(
            self.provider.create_payment(
                amount=money.minor,
                currency=money.currency,
                payment_method_types=data.payment_method_types,
                capture_method=data.capture_method,
                payment_method=data.payment_method,
                customer=user.provider_customer_id,
                description=data.description,
                receipt_email=data.receipt_email,
                metadata={**data.metadata, "paymentd_payment_id": str(payment_id)},
                idempotency_key=stripe_key(payment_id, "create"),
            )
        )
        payment = Payment(
            id=payment_id,
            account_id=principal.account_id,
            user_id=user.id,
            amount=money.minor,
            currency=money.currency,
            status=self._initial_status(intent),
            payment_method_types=list(data.payment_method_types),
            payment_method=data.payment_method,
            capture_method=data.capture_method,
            description=data.description,
            metadata_=data.metadata,
            receipt_email=data.receipt_email,
            client_secret=intent.client_secret,
            stripe_payment_intent_id=intent.id,
        )
        async with self.database.transaction() as session:
            session.add(payment)
            session.add(sync.status_event(payment, None, payment.status, _api_actor(principal, request_id)))
            await session.flush()
            await session.refresh(payment)
        log.info("payment.created", payment_id=str(payment.id), status=payment.status)
        return payment

    @staticmethod
    def _initial_status(intent: ProviderPayment) -> str:
        if intent.status is ProviderStatus.requires_confirmation:
            return PaymentStatus.requires_confirmation
        return PaymentStatus.requires_payment_method

    # ------------------------------------------------------------------ confirm

    async def confirm(self, principal: Principal, data: PaymentConfirm, request_id: str) -> Payment:
        actor = _api_actor(principal, request_id)
        async with self.database.transaction() as session:
            payment = await self._locked(session, principal, data.payment_id)
            if payment.status not in CONFIRMABLE:
                raise self._invalid_state(payment, "confirmed")
            if await repository.has_pending_attempt(session, payment.id):
                raise Conflict("A confirmation of this payment is already in progress.", code="payment_in_progress")
            method = data.payment_method or payment.payment_method
            if method is None:
                raise InvalidRequest(
                    "A payment method is needed to confirm.", code="parameter_missing", param="payment_method"
                )
            payment.attempt_count += 1
            payment.payment_method = method
            number = payment.attempt_count
            session.add(PaymentAttempt(payment_id=payment.id, number=number, payment_method=method))
            intent_id = payment.stripe_payment_intent_id

        try:
            intent = await self.provider.confirm_payment(
                intent_id,
                payment_method=method,
                return_url=data.return_url,
                idempotency_key=stripe_key(data.payment_id, "confirm", number),
            )
        except provider_types.ProviderDeclined as declined:
            await self._record_decline(data.payment_id, number, declined, actor)
            raise CardDeclined(
                declined.message,
                code=declined.code or "card_declined",
                decline_code=declined.decline_code,
                payment_id=str(data.payment_id),
            ) from declined
        except provider_types.ProviderError as error:
            await self._finish_attempt(data.payment_id, number, "unknown" if _transient(error) else "failed", error)
            raise self._translate(error) from error

        async with self.database.transaction() as session:
            payment = await self._locked(session, principal, data.payment_id)
            sync.apply_provider_payment(session, payment, intent, actor)
            attempt = await repository.attempt(session, payment.id, number)
            attempt.outcome = intent.status.value
            attempt.finished_at = datetime.now(UTC)
        log.info("payment.confirmed", payment_id=str(payment.id), status=payment.status, attempt=number)
        return payment

    async def _record_decline(
        self, payment_id: uuid.UUID, number: int, declined: provider_types.ProviderDeclined, actor: Actor
    ) -> None:
        async with self.database.transaction() as session:
            payment = await repository.get_by_id(session, payment_id, lock=True)
            if declined.payment is not None:
                sync.apply_provider_payment(session, payment, declined.payment, actor)
            elif can_move(PaymentStatus(payment.status), PaymentStatus.requires_payment_method):
                sync.move(session, payment, PaymentStatus.requires_payment_method, actor)
            payment.last_payment_error = {
                "type": "card_error",
                "code": declined.code,
                "decline_code": declined.decline_code,
                "message": declined.message,
                "payment_method": payment.payment_method,
            }
            attempt = await repository.attempt(session, payment_id, number)
            attempt.outcome = "failed"
            attempt.error_code = declined.code
            attempt.decline_code = declined.decline_code
            attempt.error_message = declined.message
            attempt.finished_at = datetime.now(UTC)
        log.info("payment.declined", payment_id=str(payment_id), decline_code=declined.decline_code, attempt=number)

    async def _finish_attempt(
        self, payment_id: uuid.UUID, number: int, outcome: str, error: provider_types.ProviderError
    ) -> None:
        """`unknown` means Stripe may or may not have acted: the reconciler settles it."""
        async with self.database.transaction() as session:
            attempt = await repository.attempt(session, payment_id, number)
            attempt.outcome = outcome
            attempt.error_code = error.code
            attempt.error_message = error.message
            attempt.finished_at = datetime.now(UTC)

    # ------------------------------------------------------------------ capture / cancel

    async def capture(self, principal: Principal, data: PaymentCapture, request_id: str) -> Payment:
        async with self.database.transaction() as session:
            payment = await self._locked(session, principal, data.payment_id)
            if payment.status != PaymentStatus.requires_capture:
                raise self._invalid_state(payment, "captured")
            amount = None
            if data.amount is not None:
                amount = Money.parse(data.amount, payment.currency, check_limits=False).minor
                if amount > payment.amount_capturable:
                    raise InvalidRequest(
                        "The amount to capture exceeds what was authorized.",
                        code="amount_too_large",
                        param="amount",
                    )
            intent_id = payment.stripe_payment_intent_id
        # Stripe captures a PaymentIntent once, so the key only needs the amount.
        key = stripe_key(data.payment_id, "capture", amount or "full")
        intent = await self._call(self.provider.capture_payment(intent_id, amount=amount, idempotency_key=key))
        return await self._apply(principal, data.payment_id, intent, _api_actor(principal, request_id))

    async def cancel(self, principal: Principal, data: PaymentCancel, request_id: str) -> Payment:
        async with self.database.transaction() as session:
            payment = await self._locked(session, principal, data.payment_id)
            if payment.status not in CANCELABLE:
                raise self._invalid_state(payment, "canceled")
            intent_id = payment.stripe_payment_intent_id
        key = stripe_key(data.payment_id, "cancel")
        intent = await self._call(self.provider.cancel_payment(intent_id, reason=data.reason, idempotency_key=key))
        return await self._apply(principal, data.payment_id, intent, _api_actor(principal, request_id))

    async def _apply(self, principal: Principal, payment_id: uuid.UUID, intent: ProviderPayment, actor: Actor) -> Payment:
        async with self.database.transaction() as session:
            payment = await self._locked(session, principal, payment_id)
            sync.apply_provider_payment(session, payment, intent, actor)
        return payment

    # ------------------------------------------------------------------ reads

    async def get(self, principal: Principal, payment_id: uuid.UUID) -> PaymentView:
        async with self.database.transaction() as session:
            payment = await repository.get(session, principal.account_id, payment_id)
            if payment is None:
                raise NotFound("No such payment.", param="id")
        if payment.status in REFRESH_ON_READ:
            await sync.refresh(self.database, self.provider, payment.id, sync.RECONCILER, timeout=self.read_budget_s)
        async with self.database.transaction() as session:
            payment = await repository.get(session, principal.account_id, payment_id)
            return PaymentView(payment, await repository.events(session, payment.id))

    async def history(
        self, principal: Principal, where: repository.HistoryFilter, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[Payment], bool]:
        async with self.database.transaction() as session:
            return await repository.history(session, principal.account_id, where, limit=limit, cursor=cursor)

    # ------------------------------------------------------------------ helpers

    async def _locked(self, session: AsyncSession, principal: Principal, payment_id: uuid.UUID) -> Payment:
        payment = await repository.get(session, principal.account_id, payment_id, lock=True)
        if payment is None:
            raise NotFound("No such payment.", param="payment_id")
        return payment

    @staticmethod
    def _invalid_state(payment: Payment, verb: str) -> Conflict:
        return Conflict(
            f"A payment in status `{payment.status}` cannot be {verb}.", code="invalid_state", param="payment_id"
        )

    async def _call(self, call):  # type: ignore[no-untyped-def]
        try:
            return await call
        except provider_types.ProviderError as error:
            raise self._translate(error) from error

    @staticmethod
    def _translate(error: provider_types.ProviderError) -> Exception:
        """Provider failures in the contract's terms; the one place they are mapped."""
        if isinstance(error, provider_types.ProviderUnavailable):
            status = 504 if error.kind == "timeout" else 503 if error.kind == "rate_limited" else 502
            retry_after = max(1, round(error.retry_after or 1)) if status == 503 else None
            return ProviderUnavailable(
                "The payment processor is unavailable; the request can be retried with the same Idempotency-Key.",
                code=f"processor_{error.kind}",
                status=status,
                retry_after=retry_after,
            )
        if isinstance(error, provider_types.ProviderInvalidRequest):
            return InvalidRequest(error.message, code=error.code or "processor_invalid_request", param=error.param)
        # Declines are answered by confirm itself; anything else here is the processor refusing us.
        return ProviderUnavailable("The payment processor refused the request.", code="processor_error", status=502)


def _transient(error: provider_types.ProviderError) -> bool:
    return isinstance(error, provider_types.ProviderUnavailable)


def history_filter(
    user_id: uuid.UUID | None, statuses: Sequence[str], created_gte: datetime | None, created_lt: datetime | None
) -> repository.HistoryFilter:
    for status in statuses:
        if status not in PaymentStatus.__members__:
            raise InvalidRequest(f"Unknown status `{status}`.", code="parameter_invalid", param="status")
    return repository.HistoryFilter(user_id, tuple(statuses), created_gte, created_lt)


__all__ = ["PaymentService", "PaymentView", "history_filter", "stripe_key"]
