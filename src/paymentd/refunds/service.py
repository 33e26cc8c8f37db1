"""Refund use cases: reserve, send to Stripe, and apply what Stripe reports.

The amount is reserved under the payment's row lock (a `pending` refund row,
committed) before Stripe is called, so concurrent refunds never add up to more
than was captured and the excess one never reaches Stripe. Stripe sees a key
derived from the refund's id, so a retry or a re-run never refunds twice.

Accounting (documented for reports and receipts): `payments.amount_refunded` is
the sum of refunds Stripe has accepted and not failed (pending, requires_action,
succeeded), which is Stripe's own `charge.amount_refunded`; a refund whose create
call is still unanswered reserves its amount but is not yet "refunded".
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit, outbound
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.errors import Conflict, NotFound, PaymentdError
from paymentd.logs import log
from paymentd.money import Money
from paymentd.payments import repository as payments_repository
from paymentd.payments import consistency, sync
from paymentd.payments.background import Background
from paymentd.payments.models import Payment
from paymentd.payments.service import stripe_key, translate
from paymentd.payments.states import PaymentStatus, can_move
from paymentd.payments.sync import Actor
from paymentd.providers import base as provider_types
from paymentd.providers.base import PaymentProvider, ProviderRefund
from paymentd.refunds import repository
from paymentd.outbound.types import REFUND_MOVES
from paymentd.refunds.models import FAILED, MOVES, PENDING, STATUSES, Refund
from paymentd.refunds.schemas import present_refund
from paymentd.refunds.schemas import RefundCreate

# Money has been captured: refunds may follow. (`refunded` too: a refund that failed
# later gives money back to refundable while the status stays, see settle_payment.)
REFUNDABLE = {PaymentStatus.succeeded, PaymentStatus.partially_refunded, PaymentStatus.refunded}
# Statuses a refund moves between; `disputed` is left to dispute closure.
_REFUND_STATUSES = {PaymentStatus.succeeded, PaymentStatus.partially_refunded, PaymentStatus.refunded}
# Stripe refusals that mean "nothing left to refund" in the contract's words.
_NOTHING_LEFT = {"amount_too_large", "charge_already_refunded"}


class RefundNotYetKnown(Exception):
    """A refund event for a payment whose own refund call is still unanswered: the
    event may be that refund's. Retry later (the webhook job's backoff does)."""


@dataclass(frozen=True)
class RefundOutcome:
    """A refund after create; `accepted` when Stripe's answer is still pending (202)."""

    refund: Refund
    accepted: bool = False


# Our own guards refused before sending: Stripe never saw these, so nothing can happen later.
NOTHING_SENT = frozenset({"outbound_rate_limited", "circuit_open"})


def refund_key(refund: Refund) -> str:
    """Stripe idempotency key: from the payment and refund ids only."""
    return stripe_key(refund.payment_id, "refund", refund.id)


class RefundService:
    def __init__(self, database: Database, provider: PaymentProvider, background: Background | None = None) -> None:
        self.database = database
        self.provider = provider
        # Shared with PaymentService so shutdown drains both.
        self.background = background or Background()

    async def create(
        self, principal: Principal, data: RefundCreate, request_id: str, *, seed: uuid.UUID | None, wait_s: float,
        actor: Actor | None = None,
    ) -> RefundOutcome:
        """`actor`: who acts when it is not the caller's key (a review denied by its deadline)."""
        deadline = self.background.deadline(wait_s)
        actor = actor or Actor("api", principal.api_key_id, request_id)
        refund_id = uuid.uuid5(seed, "refund") if seed else uuid.uuid4()
        async with self.database.transaction() as session:
            payment = await payments_repository.get(session, principal.account_id, data.payment_id, lock=True)
            if payment is None:
                raise NotFound("No such payment.", param="payment_id")
            refund = await session.get(Refund, refund_id) if seed else None
            if refund is None:
                refund = await _reserve(session, payment, data, refund_id, seed)
            intent_id = payment.stripe_payment_intent_id
        if refund.status != PENDING or refund.provider_refund_id is not None:
            return RefundOutcome(refund)  # a re-run of a request Stripe already answered
        task = self.background.spawn(self._send(refund, intent_id, actor))
        if await self.background.until(task, deadline):
            sent = _result(task)
            # Still pending without Stripe's id: Stripe did not answer; it will be settled.
            return RefundOutcome(sent, accepted=sent.status == PENDING and sent.provider_refund_id is None)
        log.info("refund.accepted", refund_id=str(refund.id), payment_id=str(refund.payment_id))
        return RefundOutcome(refund, accepted=True)

    async def send(self, refund_id: uuid.UUID, actor: Actor) -> Refund | None:
        """Send a refund reserved elsewhere (an early fraud warning's, in the event's own
        transaction) and record Stripe's answer; None when it is sent already. A failure
        leaves it pending for the reconciler, which re-sends the same keyed create."""
        async with self.database.transaction() as session:
            refund = await session.get(Refund, refund_id)
            if refund is None or refund.status != PENDING or refund.provider_refund_id is not None:
                return None
            payment = await payments_repository.get_by_id(session, refund.payment_id)
            intent_id = payment.stripe_payment_intent_id
        try:
            return await self._send(refund, intent_id, actor)
        except PaymentdError as error:
            log.info("refund.send_failed", refund_id=str(refund_id), code=getattr(error, "code", None))
            return None

    async def _send(self, refund: Refund, intent_id: str | None, actor: Actor) -> Refund:
        """Create the refund at Stripe and record the answer; runs to the end even
        when the caller stopped waiting."""
        try:
            answer = await self.provider.create_refund(
                payment_id=intent_id or "",
                amount=refund.amount,
                reason=refund.reason,
                metadata={"paymentd_refund_id": str(refund.id), "paymentd_payment_id": str(refund.payment_id)},
                idempotency_key=refund_key(refund),
            )
        except provider_types.ProviderUnavailable as error:
            if error.code not in NOTHING_SENT:
                # Stripe may have acted: the row stays pending (amount reserved), the
                # reconciler re-sends the same keyed create, and the caller is told it is
                # accepted (202), not failed: a "failed" refund retried without a key
                # would be refunded twice.
                log.info("refund.pending_at_processor", refund_id=str(refund.id), kind=error.kind)
                return refund
            await self._release(refund, error)
            raise translate(error) from error
        except provider_types.ProviderError as error:
            # Stripe refused it outright: nothing was refunded, the reservation ends.
            await self._release(refund, error)
            log.info("refund.refused", refund_id=str(refund.id), code=error.code)
            raise _refusal(error) from error
        try:
            async with self.database.transaction() as session:
                row = await session.get(Refund, refund.id)
                await apply_provider_refund(session, row, answer, actor)
        except consistency.InconsistentReport as refused:
            # Stripe's answer to our own call disagrees with what we asked: the row stays
            # pending (amount reserved) and the reconciler asks Stripe again.
            log.error("refund.processor_inconsistent", refund_id=str(refund.id), detail=str(refused))
            return refund
        log.info("refund.sent", refund_id=str(refund.id), status=row.status)
        return row

    async def _release(self, refund: Refund, error: provider_types.ProviderError) -> None:
        """Nothing reached Stripe, or Stripe refused: the reserved amount is refundable again."""
        async with self.database.transaction() as session:
            await payments_repository.get_by_id(session, refund.payment_id, lock=True)
            row = await session.get(Refund, refund.id, populate_existing=True)
            if row.status == PENDING and row.provider_refund_id is None:
                row.status = FAILED
                row.failure_reason = error.code or "processor_refused"
                row.updated_at = datetime.now(UTC)
                _status_changed(session, row, PENDING, None)


async def reserve(session: AsyncSession, payment: Payment, *, reason: str, refund_id: uuid.UUID) -> Refund:
    """Reserve a refund of everything left of the payment (Conflict when nothing is left or it
    is not refundable), to be sent after the caller's transaction commits (`RefundService.send`)."""
    return await _reserve(session, payment, RefundCreate(payment_id=payment.id, reason=reason), refund_id, None)


async def _reserve(
    session: AsyncSession, payment: Payment, data: RefundCreate, refund_id: uuid.UUID, seed: uuid.UUID | None
) -> Refund:
    """Check and reserve the amount; the caller holds the payment's row lock."""
    amount = Money.parse(data.amount, payment.currency, check_limits=False).minor if data.amount is not None else None
    status = PaymentStatus(payment.status)
    if status not in REFUNDABLE:
        hint = " It is not captured: cancel it instead." if status is PaymentStatus.requires_capture else ""
        raise Conflict(f"A payment in status `{status}` cannot be refunded.{hint}", code="invalid_state",
                       param="payment_id")
    remaining = payment.amount_received - await repository.reserved_total(session, payment.id)
    amount = remaining if amount is None else amount
    if remaining <= 0 or amount > remaining:
        left = Money.from_minor(max(remaining, 0), payment.currency).to_api()
        raise Conflict(f"The refund exceeds what is left to refund ({left} {payment.currency}).",
                       code="amount_exceeds_refundable", param="amount")
    refund = Refund(id=refund_id, account_id=payment.account_id, payment_id=payment.id, amount=amount,
                    currency=payment.currency, status=PENDING, reason=data.reason, request_seed=seed)
    session.add(refund)
    await session.flush()
    await session.refresh(refund)
    _created(session, refund, None)
    return refund


def _emit(session: AsyncSession, refund: Refund, kind: str | None) -> None:
    """The merchant's webhook about the refund, as it now stands."""
    if kind is not None:
        outbound.emit(session, kind, account_id=refund.account_id, object_type="refund", object_id=refund.id,
                      payload=present_refund(refund).model_dump(mode="json"))


def _created(session: AsyncSession, refund: Refund, actor: Actor | None) -> None:
    _emit(session, refund, "refund.created")
    _emit(session, refund, REFUND_MOVES.get(refund.status))  # one recorded already settled (made at Stripe)
    audit.record(session, "refund.created", account_id=refund.account_id, object_type="refund", object_id=refund.id,
                 actor=actor.audit() if actor else None, changes={
                     "payment_id": (None, refund.payment_id), "amount": (None, refund.amount),
                     "currency": (None, refund.currency), "status": (None, refund.status),
                     "reason": (None, refund.reason)})


def _status_changed(session: AsyncSession, refund: Refund, before: str, actor: Actor | None) -> None:
    _emit(session, refund, REFUND_MOVES.get(refund.status))
    audit.record(session, "refund.status_changed", account_id=refund.account_id, object_type="refund",
                 object_id=refund.id, actor=actor.audit() if actor else None,
                 changes={"status": (before, refund.status), "failure_reason": (None, refund.failure_reason)}
                 if refund.failure_reason else {"status": (before, refund.status)})


# --------------------------------------------------------------------------- applying Stripe's view


async def apply_provider_refund(
    session: AsyncSession, refund: Refund, provider_refund: ProviderRefund, actor: Actor
) -> Refund:
    """Bring one refund row in line with Stripe's view, then the payment's
    `amount_refunded` and status. For the API's answers, webhooks and the reconciler.

    Takes the payment's row lock first (the lock every refund decision holds), then
    re-reads the refund, so a stale row passed in cannot undo a newer report.
    Refund statuses only move forward (models.MOVES); a repeat is a no-op. A report that
    does not agree with the refund and its payment raises InconsistentReport (nothing applied).
    """
    payment = await payments_repository.get_by_id(session, refund.payment_id, lock=True)
    await session.refresh(refund)
    if (bad := consistency.of_refund(payment, provider_refund, recorded_amount=refund.amount,
                                     refunded_besides=0)) is not None:
        raise consistency.InconsistentReport(payment.id, bad)
    if refund.provider_refund_id is None:
        refund.provider_refund_id = provider_refund.id
    reported = provider_refund.status if provider_refund.status in STATUSES else None
    if reported is not None and reported != refund.status:
        if reported in MOVES[refund.status]:
            before = refund.status
            refund.status = reported
            refund.failure_reason = provider_refund.failure_reason if reported == FAILED else refund.failure_reason
            _status_changed(session, refund, before, actor)
        else:
            log.info("refund.move_ignored", refund_id=str(refund.id), current=refund.status, reported=reported)
    refund.updated_at = datetime.now(UTC)
    await session.flush()
    await settle_payment(session, payment, actor)
    return refund


async def settle_payment(session: AsyncSession, payment: Payment, actor: Actor) -> None:
    """Recompute `amount_refunded` from the refund rows and move the status to what
    it implies (the caller holds the payment's row lock)."""
    refunded = await repository.accepted_total(session, payment.id)
    payment.amount_refunded = min(refunded, payment.amount)
    payment.updated_at = datetime.now(UTC)
    current = PaymentStatus(payment.status)
    if current not in _REFUND_STATUSES:
        return  # disputed: the dispute's closure decides where it goes back to
    if refunded <= 0:
        target = PaymentStatus.succeeded
    elif refunded >= payment.amount_received:
        target = PaymentStatus.refunded
    else:
        target = PaymentStatus.partially_refunded
    if target is current:
        return
    if can_move(current, target):
        sync.move(session, payment, target, actor)
    else:
        # A refund that failed after the payment moved on: the state machine has no
        # way back (states.py), so the status stays and amount_refunded tells the truth.
        log.warning("refund.status_not_moved", payment_id=str(payment.id), current=current.value,
                    implied=target.value)


async def apply_refund_event(session: AsyncSession, provider_refund: ProviderRefund, actor: Actor) -> str:
    """Apply a refund as a webhook or Stripe's event list reports it
    (refund.created / refund.updated / refund.failed / charge.refund.updated).

    Returns the outcome for the inbox row. A refund paymentd does not know is
    recorded (one made in Stripe's dashboard), unless one of the payment's own
    refund calls is still unanswered: then RefundNotYetKnown (retry later).
    """
    refund = await repository.by_provider_id(session, provider_refund.id)
    if refund is not None:
        await apply_provider_refund(session, refund, provider_refund, actor)
        return "applied"
    payment = await payments_repository.get_by_intent(session, provider_refund.payment_id, lock=True)
    if payment is None:
        return "ignored: no payment with this PaymentIntent"
    if await repository.unsent_exists(session, payment.id):
        raise RefundNotYetKnown(provider_refund.id)
    if await repository.by_provider_id(session, provider_refund.id) is not None:  # raced under the lock
        return await apply_refund_event(session, provider_refund, actor)
    if (bad := consistency.of_refund(payment, provider_refund, recorded_amount=None,
                                     refunded_besides=await repository.accepted_total(session, payment.id))):
        raise consistency.InconsistentReport(payment.id, bad)
    refund = Refund(account_id=payment.account_id, payment_id=payment.id, amount=provider_refund.amount,
                    currency=provider_refund.currency, status=provider_refund.status if provider_refund.status
                    in STATUSES else PENDING, reason=_known_reason(provider_refund.reason),
                    provider_refund_id=provider_refund.id, failure_reason=provider_refund.failure_reason)
    session.add(refund)
    await session.flush()
    await session.refresh(refund)  # its created_at, for the webhook
    _created(session, refund, actor)
    await settle_payment(session, payment, actor)
    log.info("refund.recorded_external", refund_id=str(refund.id), payment_id=str(payment.id))
    return "applied: refund made outside paymentd"


async def reconcile_refunds(
    database: Database, provider: PaymentProvider, *, older_than: timedelta, limit: int = 200,
    actor: Actor = sync.RECONCILER,
) -> int:
    """Settle refunds left pending: re-send the same keyed create for those Stripe
    never answered (a crash, a timeout), ask Stripe about the others. Returns how
    many were looked at. Safe to run twice or concurrently.

    Stripe keeps idempotency keys 24 hours: run this more often than that, or an
    unanswered create re-sent later could be treated as new by Stripe.
    """
    async with database.transaction() as session:
        rows = await repository.unsettled(session, datetime.now(UTC) - older_than, limit)
        work = [(r, (await payments_repository.get_by_id(session, r.payment_id)).stripe_payment_intent_id)
                for r in rows]
    for refund, intent_id in work:
        try:
            if refund.provider_refund_id is None:
                answer = await provider.create_refund(
                    payment_id=intent_id or "", amount=refund.amount, reason=refund.reason,
                    metadata={"paymentd_refund_id": str(refund.id), "paymentd_payment_id": str(refund.payment_id)},
                    idempotency_key=refund_key(refund),
                )
            else:
                answer = await provider.retrieve_refund(refund.provider_refund_id)
        except provider_types.ProviderError as error:
            log.info("refund.reconcile_skipped", refund_id=str(refund.id), error_type=type(error).__name__)
            continue
        try:
            async with database.transaction() as session:
                row = await session.get(Refund, refund.id)
                await apply_provider_refund(session, row, answer, actor)
        except consistency.InconsistentReport as refused:
            log.error("refund.processor_inconsistent", refund_id=str(refund.id), detail=str(refused))
    return len(work)


def _known_reason(reason: str | None) -> str | None:
    allowed = {"duplicate", "fraudulent", "requested_by_customer", "expired_uncaptured_charge"}
    return reason if reason in allowed else None


def _refusal(error: provider_types.ProviderError) -> PaymentdError:
    if error.code in _NOTHING_LEFT:
        return Conflict("The refund exceeds what is left to refund at the processor.",
                        code="amount_exceeds_refundable", param="amount")
    if error.code in ("charge_disputed", "charge_not_refundable"):
        return Conflict("The processor refuses refunds on this payment now.", code="invalid_state",
                        param="payment_id")
    return translate(error)


def _result(task: asyncio.Task[Any]) -> Any:
    try:
        return task.result()
    except provider_types.ProviderError as error:  # pragma: no cover - _send translates
        raise translate(error) from error
