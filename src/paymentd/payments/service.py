"""Payment use cases: create, confirm, capture, cancel, and reads.

Work is written down before it is done: the attempt row is committed before the
Stripe call and no transaction is held across one. Every Stripe call carries a
key derived from paymentd's ids, and no request waits on Stripe longer than its
budget: past it the call finishes in the background and the caller gets 202.
"""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit, metrics
from paymentd.auth.service import Principal
from paymentd.db import Database, after_commit, driver_of, retry_store
from paymentd.disputes.models import Dispute
from paymentd.errors import (
    CardDeclined,
    Conflict,
    FraudBlocked,
    InvalidRequest,
    NotFound,
    PaymentdError,
    ProviderUnavailable,
)
from paymentd.fraud import gate as fraud_gate
from paymentd.fraud import postauth as fraud_postauth
from paymentd.fraud import reviews
from paymentd.fraud import store as fraud_store
from paymentd.fraud.models import EarlyFraudWarning
from paymentd.instants import utc_instant
from paymentd.logs import log
from paymentd.money import Money
from paymentd.payments import repository, sql, sync
from paymentd.payments.background import Background
from paymentd.payments.models import Payment, PaymentAttempt, PaymentEvent
from paymentd.payments.schemas import PaymentCancel, PaymentCapture, PaymentConfirm, PaymentCreate
from paymentd.payments.states import PaymentStatus, can_move
from paymentd.payments.sync import Actor
from paymentd.providers import base as provider_types
from paymentd.providers.base import PaymentProvider, ProviderPayment
from paymentd.refunds.models import Refund
from paymentd.users import payment_methods
from paymentd.users import repository as users
from paymentd.users.models import User

# An attempt Stripe refused as an invalid request (no card was asked): not a decline.
REFUSED = "refused"
CONFIRMABLE = {PaymentStatus.requires_payment_method, PaymentStatus.requires_confirmation}
CANCELABLE = {
    PaymentStatus.requires_payment_method,
    PaymentStatus.requires_confirmation,
    PaymentStatus.requires_action,
    PaymentStatus.requires_capture,
}
# Bank debits take the payer's IP and user agent as their mandate's online acceptance.
MANDATE_TYPES = frozenset({"sepa_debit", "us_bank_account", "bacs_debit", "au_becs_debit", "acss_debit"})
# Statuses that change at Stripe without a call from us (customer authentication,
# bank settlement); reading such a payment asks Stripe first.
REFRESH_ON_READ = {PaymentStatus.requires_action, PaymentStatus.processing}


def stripe_key(payment_id: uuid.UUID, operation: str, *parts: object) -> str:
    """Idempotency key for a Stripe call, derived only from paymentd's own ids,
    so a retry, a restart or a second worker repeats the same call, never a new one."""
    return ":".join(["paymentd", str(payment_id), operation, *map(str, parts)])


@dataclass(frozen=True)
class Outcome:
    """A payment after an operation; `accepted` when Stripe's answer is still pending (202)."""

    payment: Payment
    accepted: bool = False


@dataclass(frozen=True)
class PaymentView:
    """A payment with its history, refunds and disputes, read at one time."""

    payment: Payment
    events: Sequence[PaymentEvent]
    refunds: Sequence[Refund]
    disputes: Sequence[Dispute]
    busy: bool  # a confirm of ours is in flight: Stripe's answer will be recorded by it
    early_fraud_warnings: Sequence[EarlyFraudWarning] = ()


class PaymentService:
    def __init__(self, database: Database, provider: PaymentProvider, *, read_budget_s: float = 0.3,
                 fraud: fraud_gate.FraudGate | None = None) -> None:
        self.database = database
        self.provider = provider
        # paymentd's own fraud rules, before Stripe is called (fraud/gate.py).
        self.fraud = fraud or fraud_gate.FraudGate(provider)
        self.read_budget_s = read_budget_s
        self.background = Background()
        # PaymentIntents being created in this process, so a confirm can wait for one.
        self._creating: dict[uuid.UUID, asyncio.Task[ProviderPayment]] = {}

    # ------------------------------------------------------------------ create

    async def create(
        self, principal: Principal, data: PaymentCreate, request_id: str, *, seed: uuid.UUID | None, wait_s: float
    ) -> Outcome:
        deadline = self.background.deadline(wait_s)
        money = Money.parse(data.amount, data.currency)
        payment_id = uuid.uuid5(seed, "payment") if seed else uuid.uuid4()
        async with self.database.sql_connection() as conn:  # reads only
            if seed and (existing := await sql.payment(conn, payment_id, account_id=principal.account_id)):
                return Outcome(existing)  # a re-run of a request whose answer was lost
            payer = await users.payer(conn, principal.account_id, data.user_id)
            if payer is None:
                raise NotFound("No such user.", param="user_id")
            payment = self._new_payment(principal, payment_id, payer.user_id, money, data)
            decision = await self.fraud.at_create(conn, payment)
        actor = _api_actor(principal, request_id)
        if decision is not None and decision.action == "block":
            # Blocked before Stripe: the payment is recorded canceled, no PaymentIntent made.
            payment = await self._insert(payment, actor, decision)
            raise _blocked(payment, decision)
        if decision is not None and decision.action == "review":
            payment.capture_method = "manual"  # authorized, then held for the review
        # Stripe first when it answers in time: a refusal then leaves nothing behind.
        creating = self._create_intent(payment, payer.customer)
        if await self.background.until(creating, deadline):
            intent = self._result(creating)
            payment.stripe_payment_intent_id = intent.id
            payment.client_secret = intent.client_secret
        payment = await self._insert(payment, actor, decision)
        if payment.stripe_payment_intent_id is None:
            # Slow Stripe: the payment exists now, its PaymentIntent is attached when it
            # arrives (and by confirm, which re-sends the same keyed create, after a crash).
            self.background.spawn(self._attach_intent_later(payment.id, creating))
        log.info("payment.created", payment_id=str(payment.id), status=payment.status)
        return Outcome(payment)

    @staticmethod
    def _new_payment(principal: Principal, payment_id: uuid.UUID, user_id: uuid.UUID, money: Money,
                     data: PaymentCreate) -> Payment:
        now = datetime.now(UTC)
        return Payment(  # every column set here, so the insert needs no read-back
            id=payment_id,
            account_id=principal.account_id,
            user_id=user_id,
            amount=money.minor,
            currency=money.currency,
            status=PaymentStatus.requires_confirmation if data.payment_method else PaymentStatus.requires_payment_method,
            payment_method_types=list(data.payment_method_types),
            payment_method=data.payment_method,
            capture_method=data.capture_method,
            description=data.description,
            metadata_=dict(data.metadata),
            receipt_email=data.receipt_email,
            amount_capturable=0,
            amount_received=0,
            amount_refunded=0,
            attempt_count=0,
            risk_rules=[],
            created_at=now,
            updated_at=now,
        )

    def _create_intent(self, payment: Payment, customer: str | None) -> asyncio.Task[ProviderPayment]:
        """Create (or, with the same key, get back) the payment's PaymentIntent."""
        if (running := self._creating.get(payment.id)) is not None:
            return running
        task = self.background.spawn(
            self.provider.create_payment(
                amount=payment.amount,
                currency=payment.currency,
                payment_method_types=payment.payment_method_types,
                capture_method=payment.capture_method,
                payment_method=None if payment.status == PaymentStatus.requires_payment_method else payment.payment_method,
                customer=customer,
                description=payment.description,
                receipt_email=payment.receipt_email,
                metadata={**payment.metadata_, "paymentd_payment_id": str(payment.id)},
                idempotency_key=stripe_key(payment.id, "create"),
            )
        )
        self._creating[payment.id] = task
        task.add_done_callback(lambda _: self._creating.pop(payment.id, None))
        return task

    async def _insert(self, payment: Payment, actor: Actor, decision: fraud_store.Decision | None = None) -> Payment:
        try:
            async with self.database.sql_transaction() as conn:
                # The payment row first: the event refers to it.
                await sql.insert(conn, (payment, sync.status_event(payment, None, payment.status, actor)))
                audit.record(conn, "payment.created", account_id=payment.account_id, object_type="payment",
                             object_id=payment.id, actor=actor.audit(), changes=_created(payment))
                sync.emit_payment_event(conn, payment, None)  # payment.created
                if decision is not None:
                    await self._apply_decision(conn, payment, decision, actor)
            return payment
        except asyncpg.UniqueViolationError:
            # The same seeded request ran twice at once: the other one's row stands.
            async with self.database.sql_connection() as conn:
                existing = await sql.payment(conn, payment.id)
            if existing is None:
                raise
            return existing

    async def _attach_intent_later(self, payment_id: uuid.UUID, creating: asyncio.Task[ProviderPayment]) -> None:
        try:
            intent = await creating
        except provider_types.ProviderUnavailable:
            return  # confirm or cancel re-send the same keyed create when they need it
        except provider_types.ProviderError as error:
            await self._creation_refused(payment_id, error)
            return
        await self._store_intent(payment_id, intent)

    async def _store_intent(self, payment_id: uuid.UUID, intent: ProviderPayment) -> None:
        async with self.database.sql_transaction() as conn:
            payment = await sql.payment(conn, payment_id, lock=True)
            if payment.stripe_payment_intent_id is None:
                payment.stripe_payment_intent_id = intent.id
                payment.client_secret = intent.client_secret
                await sql.save(conn, payment)

    async def _creation_refused(self, payment_id: uuid.UUID, error: provider_types.ProviderError) -> None:
        """Stripe refused the PaymentIntent itself (after create had answered 201):
        the payment can never be paid, so it ends canceled, saying why."""
        async with self.database.transaction() as session:
            payment = await repository.get_by_id(session, payment_id, lock=True)
            payment.last_payment_error = {"type": "invalid_request_error", "code": error.code, "decline_code": None,
                                          "message": error.message, "payment_method": None}
            if can_move(PaymentStatus(payment.status), PaymentStatus.canceled):
                sync.move(session, payment, PaymentStatus.canceled, sync.RECONCILER)

    async def _ensure_intent(self, payment: Payment) -> str:
        """The payment's PaymentIntent id; when create did not get one in time, the
        same keyed create again (Stripe answers with the one it made, if any).
        The customer is the user's as of now: a user who saved a method since would
        make Stripe see other parameters under the key, which it refuses; rare, and loud."""
        if payment.stripe_payment_intent_id:
            return payment.stripe_payment_intent_id
        async with self.database.transaction() as session:
            # Fresh: the create's own background task may have stored it meanwhile.
            payment = await repository.get_by_id(session, payment.id)
            user = await session.get(User, payment.user_id)
        if payment.stripe_payment_intent_id:
            return payment.stripe_payment_intent_id
        try:
            intent = await self._create_intent(payment, user.provider_customer_id)
        except provider_types.ProviderInvalidRequest as error:
            await self._creation_refused(payment.id, error)
            raise
        await self._store_intent(payment.id, intent)
        return intent.id

    # ------------------------------------------------------------------ confirm

    async def confirm(
        self, principal: Principal, data: PaymentConfirm, request_id: str, *, seed: uuid.UUID | None, wait_s: float
    ) -> Outcome:
        deadline = self.background.deadline(wait_s)
        actor = _api_actor(principal, request_id)
        device = fraud_gate.Device(str(data.ip_address or ""), data.user_agent or "")
        decision: fraud_store.Decision | None = None
        review = False
        async with self.database.sql_transaction() as conn:
            payment = await sql.payment(conn, data.payment_id, account_id=principal.account_id, lock=True)
            if payment is None:
                raise NotFound("No such payment.", param="payment_id")
            number, method, resumed = await self._open_attempt(conn, payment, data, seed)
            if resumed:  # the first run decided already: hold for review as it did
                review = await fraud_store.action_of(conn, payment.id, number) == "review"
                pending = None
            else:
                pending = await self.fraud.confirm_start(conn, payment, number, device)
                if pending is not None and not pending.needs_card:
                    decision = self.fraud.confirm_decision(payment, number, pending)
                    await self._apply_decision(conn, payment, decision, actor)
        if pending is not None and pending.needs_card:
            # Only now the card's facts (a processor read): every rule before the first
            # that reads the card has passed, so a block by IP or user never costs a call.
            facts = await self.fraud.card(method)
            async with self.database.sql_transaction() as conn:
                payment = await sql.payment(conn, payment.id, lock=True)
                await self.fraud.confirm_finish(conn, payment, pending, facts)
                decision = self.fraud.confirm_decision(payment, number, pending)
                await self._apply_decision(conn, payment, decision, actor)
        if decision is not None:
            if decision.action == "block":
                raise _blocked(payment, decision)
            review = decision.action == "review"
        task = self.background.spawn(self._confirm_and_record(
            payment, number, method, data.return_url, _mandate(data, payment), actor,
            capture_method="manual" if review else None))
        return await self._answer(
            task, payment.id, deadline, actor, pending_status=PaymentStatus.processing, attempt=number
        )

    async def _apply_decision(
        self, conn: asyncpg.Connection, payment: Payment, decision: fraud_store.Decision, actor: Actor
    ) -> None:
        """A fraud decision stored with what it does to the payment, in the caller's transaction
        (the payment locked or being inserted): a block cancels it, naming the rule."""
        await fraud_store.insert(conn, decision, actor.audit())
        if decision.fired:  # shown in the payment's `risk.rules`, every stage's rules added up
            payment.risk_rules = list(dict.fromkeys([*(payment.risk_rules or []), *decision.fired]))
            if decision.action != "block":
                await sql.save(conn, payment)
        if decision.action == "block":
            payment.last_payment_error = {
                "type": "fraud_error", "code": "payment_blocked", "decline_code": None,
                "message": _blocked(payment, decision).message, "payment_method": payment.payment_method,
                "rule": decision.fired[-1],
            }
            batch = sql.Batch()
            sync.move(batch, payment, PaymentStatus.canceled, actor)
            await sql.save(conn, payment, batch)
            await sql.close_open_attempts(conn, payment.id, outcome="blocked", error_code="payment_blocked",
                                          error_message=f"blocked by fraud rule {decision.fired[-1]}")
        elif decision.action == "review":
            await self._open_review(conn, payment, decision, actor)

    async def _open_review(
        self, conn: asyncpg.Connection, payment: Payment, decision: fraud_store.Decision, actor: Actor
    ) -> None:
        """A rule's `review`: the payment is held at requires_capture by manual capture, and
        its review is opened (reviews.py: approve captures, deny cancels, the deadline decides)."""
        if decision.stage == "confirm" and payment.stripe_payment_intent_id is not None:
            # The row says what the confirm will tell Stripe. (Before the PaymentIntent
            # exists the row keeps create's parameters: a re-sent create must match.)
            payment.capture_method = "manual"
            await sql.save(conn, payment)
        rules = ", ".join(f for f in decision.fired)
        await reviews.open_review(conn, payment=payment, reason=f"fraud rules: {rules}"[:200], source="rule",
                                  actor=actor.audit())

    async def _open_attempt(
        self, conn: asyncpg.Connection, payment: Payment, data: PaymentConfirm, seed: uuid.UUID | None
    ) -> tuple[int, str, bool]:
        """A new attempt, or the one a re-run of the same idempotent request left open (resumed: True)."""
        open_attempt = await sql.open_attempt(conn, payment.id)
        if open_attempt is not None:
            if seed is not None and open_attempt.request_seed == seed:
                return open_attempt.number, open_attempt.payment_method, True
            raise Conflict("A confirmation of this payment is already in progress.", code="payment_in_progress")
        if payment.status not in CONFIRMABLE:
            raise _invalid_state(payment, "confirmed")
        method = data.payment_method or payment.payment_method
        if method is None:
            raise InvalidRequest("A payment method is needed to confirm.", code="parameter_missing", param="payment_method")
        # A method saved for another user is not this payment's to use (404, before Stripe).
        await payment_methods.check_usable(conn, payment.user_id, method)
        payment.attempt_count += 1
        if payment.stripe_payment_intent_id is not None:
            # Until the PaymentIntent exists the row keeps the method it was created
            # with: a re-sent create must carry exactly the original parameters.
            payment.payment_method = method
        await sql.save(conn, payment)
        await sql.insert(conn, [PaymentAttempt(payment_id=payment.id, number=payment.attempt_count,
                                               payment_method=method, request_seed=seed)])
        return payment.attempt_count, method, False

    async def _confirm_and_record(
        self, payment: Payment, number: int, method: str, return_url: str | None,
        mandate: provider_types.MandateAcceptance | None, actor: Actor, *, capture_method: str | None = None,
    ) -> Payment:
        """Runs to the end even when the caller stopped waiting: the outcome is recorded."""
        payment_id = payment.id
        try:
            intent_id = await retry_store(partial(self._ensure_intent, payment))
        except provider_types.ProviderError as error:
            await retry_store(partial(self._end_attempt, payment_id, number, "abandoned", error, actor))
            raise translate(error) from error
        try:
            intent = await self.provider.confirm_payment(
                intent_id,
                payment_method=method,
                return_url=return_url,
                mandate=mandate,
                idempotency_key=stripe_key(payment_id, "confirm", number),
                **({"capture_method": capture_method} if capture_method else {}),
            )
        except provider_types.ProviderDeclined as declined:
            await retry_store(partial(self._record_decline, payment_id, number, declined, actor))
            raise CardDeclined(
                declined.message,
                code=declined.code or "card_declined",
                decline_code=declined.decline_code,
                payment_id=str(payment_id),
            ) from declined
        except provider_types.ProviderUnavailable as error:
            # Stripe may have acted: `unknown` leaves it to the reconciler.
            await retry_store(partial(self._finish_attempt, payment_id, number, "unknown", error))
            raise translate(error) from error
        except provider_types.ProviderInvalidRequest as error:
            # Stripe refused the request itself (an unknown or unusable payment method, say):
            # no card was asked, so it is no decline and no failed payment (reports, metrics).
            await retry_store(partial(self._end_attempt, payment_id, number, REFUSED, error, actor))
            raise translate(error) from error
        except provider_types.ProviderError as error:
            await retry_store(partial(self._end_attempt, payment_id, number, "failed", error, actor))
            raise translate(error) from error

        with fraud_postauth.collecting() as blocked:
            payment = await retry_store(partial(self._record, payment_id, intent, actor))
        if blocked:
            # A post-auth rule blocked it: the authorization canceled, or the capture refunded, now.
            await fraud_postauth.enforce(self.database, self.provider, payment_id, payments=self)
            async with self.database.sql_connection() as conn:
                payment = await sql.payment(conn, payment_id)
        log.info("payment.confirmed", payment_id=str(payment_id), status=payment.status, attempt=number)
        return payment

    async def _record_decline(
        self, payment_id: uuid.UUID, number: int, declined: provider_types.ProviderDeclined, actor: Actor
    ) -> None:
        async with self.database.transaction() as session:
            payment = await repository.get_by_id(session, payment_id, lock=True)
            before = payment.status
            error = {
                "type": "card_error",
                "code": declined.code,
                "decline_code": declined.decline_code,
                "message": declined.message,
            }
            if declined.payment is not None:
                sync.apply_provider_payment(session, payment, declined.payment, actor)  # Stripe's error, then the move
            elif can_move(PaymentStatus(payment.status), PaymentStatus.requires_payment_method):
                # The error first: the move's webhook (payment.failed) carries it.
                payment.last_payment_error = {**error, "payment_method": payment.payment_method}
                sync.move(session, payment, PaymentStatus.requires_payment_method, actor)
            payment.last_payment_error = {**error, "payment_method": payment.payment_method}
            if before == payment.status == PaymentStatus.requires_payment_method:
                # Declined where it stood (no move to report): still the merchant's payment.failed.
                sync.emit_payment_event(session, payment, before)
            attempt = await repository.attempt(session, payment_id, number)
            attempt.outcome = "failed"
            attempt.error_code = declined.code
            attempt.decline_code = declined.decline_code
            attempt.error_message = declined.message
            attempt.finished_at = datetime.now(UTC)
            for column, value in sync.attempt_risk(declined.payment.risk if declined.payment else None).items():
                setattr(attempt, column, value)
            after_commit(session, partial(metrics.declined, declined.decline_code or declined.code))
            await self.fraud.count_outcome(await driver_of(session), payment, declined=True)
        log.info("payment.declined", payment_id=str(payment_id), decline_code=declined.decline_code, attempt=number)

    async def _end_attempt(
        self, payment_id: uuid.UUID, number: int, outcome: str, error: provider_types.ProviderError, actor: Actor
    ) -> None:
        """The attempt is over without a charge: the confirm was refused (`failed`) or
        never sent (`abandoned`, no PaymentIntent could be had). A payment we had
        shown as processing says why and may be confirmed again."""
        async with self.database.transaction() as session:
            payment = await repository.get_by_id(session, payment_id, lock=True)
            attempt = await repository.attempt(session, payment_id, number)
            attempt.outcome = outcome
            attempt.error_code = error.code
            attempt.error_message = error.message
            attempt.finished_at = datetime.now(UTC)
            if outcome == REFUSED:
                after_commit(session, partial(metrics.refused_attempt, error.code))
            if payment.status == PaymentStatus.processing:
                payment.last_payment_error = {"type": "api_error" if outcome == "abandoned" else "invalid_request_error",
                                              "code": error.code or "processor_unavailable", "decline_code": None,
                                              "message": error.message, "payment_method": payment.payment_method}
                sync.move(session, payment, PaymentStatus.requires_payment_method, actor)

    async def _finish_attempt(
        self, payment_id: uuid.UUID, number: int, outcome: str, error: provider_types.ProviderError
    ) -> None:
        async with self.database.transaction() as session:
            attempt = await repository.attempt(session, payment_id, number)
            attempt.outcome = outcome
            attempt.error_code = error.code
            attempt.error_message = error.message
            attempt.finished_at = datetime.now(UTC)

    # ------------------------------------------------------------------ capture / cancel

    async def capture(
        self, principal: Principal, data: PaymentCapture, request_id: str, *, wait_s: float, actor: Actor | None = None
    ) -> Outcome:
        """`actor`: who acts when it is not the caller's key (a review's deadline)."""
        deadline = self.background.deadline(wait_s)
        async with self.database.transaction() as session:
            payment = await self._locked(session, principal, data.payment_id)
            if payment.status != PaymentStatus.requires_capture:
                raise _invalid_state(payment, "captured")
            amount = None
            if data.amount is not None:
                amount = Money.parse(data.amount, payment.currency, check_limits=False).minor
                if amount > payment.amount_capturable:
                    raise InvalidRequest(
                        "The amount to capture exceeds what was authorized.", code="amount_too_large", param="amount"
                    )
        # Stripe captures a PaymentIntent once, so the key only needs the amount.
        call = self.provider.capture_payment(
            payment.stripe_payment_intent_id,
            amount=amount,
            idempotency_key=stripe_key(payment.id, "capture", amount or "full"),
        )
        actor = actor or _api_actor(principal, request_id)
        task = self.background.spawn(self._apply_when_done(payment.id, call, actor, "payment.captured"))
        return await self._answer(task, payment.id, deadline, actor, pending_status=PaymentStatus.processing)

    async def cancel(
        self, principal: Principal, data: PaymentCancel, request_id: str, *, wait_s: float, actor: Actor | None = None
    ) -> Outcome:
        deadline = self.background.deadline(wait_s)
        async with self.database.transaction() as session:
            payment = await self._locked(session, principal, data.payment_id)
            if payment.status not in CANCELABLE:
                raise _invalid_state(payment, "canceled")
        actor = actor or _api_actor(principal, request_id)
        task = self.background.spawn(self._apply_when_done(
            payment.id, self._cancel_at_stripe(payment, data.reason), actor, "payment.canceled"))
        # A cancel in flight shows the payment as it stands, not as processing.
        return await self._answer(task, payment.id, deadline, actor, pending_status=None)

    async def _cancel_at_stripe(self, payment: Payment, reason: str | None) -> ProviderPayment:
        intent_id = await self._ensure_intent(payment)
        return await self.provider.cancel_payment(intent_id, reason=reason, idempotency_key=stripe_key(payment.id, "cancel"))

    async def _apply_when_done(self, payment_id: uuid.UUID, call: Any, actor: Actor, action: str) -> Payment:
        try:
            intent = await call
        except provider_types.ProviderError as error:
            raise translate(error) from error
        return await self._record(payment_id, intent, actor, action=action)

    async def _record(
        self, payment_id: uuid.UUID, intent: ProviderPayment, actor: Actor, *, action: str | None = None
    ) -> Payment:
        """Stripe's answer onto the payment, under its lock; open attempts take the
        outcome it reports. Plain SQL: every confirm ends here (payments/sql.py).
        `action`: the audited operation Stripe has just done (a capture, a cancel)."""
        async with self.database.sql_transaction() as conn:
            payment = await sql.payment(conn, payment_id, lock=True)
            before = {"amount_received": payment.amount_received, "amount_capturable": payment.amount_capturable}
            batch = sql.Batch()
            if sync.apply_provider_payment(batch, payment, intent, actor):
                await sql.save(conn, payment, batch)
            if action is not None:
                after = {"amount_received": payment.amount_received, "amount_capturable": payment.amount_capturable}
                audit.record(conn, action, account_id=payment.account_id, object_type="payment",
                             object_id=payment.id, actor=actor.audit(), changes=audit.diff(before, after))
            if (outcome := sync.confirmed_outcome(intent)) is not None:
                await sql.close_open_attempts(conn, payment_id, **asdict(outcome))
                if outcome.outcome in ("succeeded", "requires_capture"):
                    await self.fraud.count_outcome(conn, payment, declined=False)
            await reviews.note_processor_review(conn, payment, intent, actor.audit())
            await fraud_postauth.evaluate(conn, self.fraud, payment, actor.audit())
        return payment

    async def _answer(
        self,
        task: asyncio.Task[Payment],
        payment_id: uuid.UUID,
        deadline: float,
        actor: Actor,
        *,
        pending_status: PaymentStatus | None,
        attempt: int | None = None,
    ) -> Outcome:
        """The finished result by the deadline; else 202 with the payment as it
        stands (moved to `processing` where that says what is happening)."""
        if await self.background.until(task, deadline):
            return Outcome(self._result(task))
        # Plain SQL: with Stripe slow, every confirm answers from here (payments/sql.py).
        async with self.database.sql_transaction() as conn:
            payment = await sql.payment(conn, payment_id, lock=True)
            if task.done():  # finished while we took the lock
                return Outcome(self._result(task))
            if attempt is not None:
                open_attempt = await sql.open_attempt(conn, payment_id)
                if open_attempt is None or open_attempt.number != attempt:
                    # The outcome is already recorded (a decline, say); the task is only returning it.
                    return Outcome(await task)
            if pending_status and can_move(PaymentStatus(payment.status), pending_status):
                batch = sql.Batch()
                sync.move(batch, payment, pending_status, actor)
                await sql.save(conn, payment, batch)
        log.info("payment.accepted", payment_id=str(payment_id), status=payment.status)
        return Outcome(payment, accepted=True)

    @staticmethod
    def _result(task: asyncio.Task[Any]) -> Any:
        """A finished task's value; provider errors in the contract's terms."""
        try:
            return task.result()
        except provider_types.ProviderError as error:
            raise translate(error) from error

    # ------------------------------------------------------------------ reads

    async def get(self, principal: Principal, payment_id: uuid.UUID) -> PaymentView:
        view = await self._view(principal.account_id, payment_id)
        if view.payment.status in REFRESH_ON_READ and not view.busy:
            await sync.refresh(self.database, self.provider, payment_id, sync.RECONCILER, timeout=self.read_budget_s,
                               fraud=self.fraud)
            view = await self._view(principal.account_id, payment_id)
        return view

    async def _view(self, account_id: uuid.UUID, payment_id: uuid.UUID) -> PaymentView:
        # Plain SQL, and no transaction (under READ COMMITTED it would not make the reads
        # one snapshot, only cost BEGIN and COMMIT): GET is the call clients poll.
        async with self.database.sql_connection() as conn:
            payment = await sql.payment(conn, payment_id, account_id=account_id)
            if payment is None:
                raise NotFound("No such payment.", param="id")
            return PaymentView(
                payment,
                events=await sql.of_payment(conn, PaymentEvent, payment.id, order="id"),
                refunds=await sql.of_payment(conn, Refund, payment.id, order="created_at, id"),
                disputes=await sql.of_payment(conn, Dispute, payment.id, order="created_at, id"),
                busy=payment.status in REFRESH_ON_READ and await sql.open_attempt(conn, payment.id) is not None,
                # Issuers warn only about captured money: no query for the others.
                early_fraud_warnings=await sql.of_payment(conn, EarlyFraudWarning, payment.id, order="created_at, id")
                if payment.amount_received else (),
            )

    async def history(
        self, principal: Principal, where: repository.HistoryFilter, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[Payment], bool]:
        async with self.database.transaction() as session:
            return await repository.history(session, principal.account_id, where, limit=limit, cursor=cursor)

    async def _locked(self, session: AsyncSession, principal: Principal, payment_id: uuid.UUID) -> Payment:
        payment = await repository.get(session, principal.account_id, payment_id, lock=True)
        if payment is None:
            raise NotFound("No such payment.", param="payment_id")
        return payment


def _created(payment: Payment) -> dict[str, tuple[Any, Any]]:
    """What a new payment's audit entry shows (description, metadata and email sealed)."""
    return {
        "user_id": (None, payment.user_id), "amount": (None, payment.amount), "currency": (None, payment.currency),
        "status": (None, payment.status), "capture_method": (None, payment.capture_method),
        "description": (None, payment.description), "metadata": (None, payment.metadata_ or None),
        "receipt_email": (None, payment.receipt_email),
    }


def _mandate(data: PaymentConfirm, payment: Payment) -> provider_types.MandateAcceptance | None:
    """Stripe's mandate acceptance: the caller's own `mandate_data`, else, for a payment
    that can only be a bank debit, the payer's `ip_address` and `user_agent` (Stripe
    takes a payer's device nowhere else on a server-side confirm)."""
    if data.mandate_data is not None:
        online = data.mandate_data.customer_acceptance.online
        return provider_types.MandateAcceptance(str(online.ip_address), online.user_agent)
    if data.ip_address and data.user_agent and set(payment.payment_method_types) <= MANDATE_TYPES:
        return provider_types.MandateAcceptance(str(data.ip_address), data.user_agent)
    return None


def _blocked(payment: Payment, decision: fraud_store.Decision) -> FraudBlocked:
    rule = decision.fired[-1]
    return FraudBlocked(f"The payment was blocked by fraud rule `{rule}`.", code="payment_blocked",
                        payment_id=str(payment.id), rule=rule)


def _api_actor(principal: Principal, request_id: str) -> Actor:
    return Actor("api", principal.api_key_id, request_id)


def _invalid_state(payment: Payment, verb: str) -> Conflict:
    return Conflict(f"A payment in status `{payment.status}` cannot be {verb}.", code="invalid_state", param="payment_id")


def translate(error: provider_types.ProviderError) -> PaymentdError:
    """Provider failures in the contract's terms; the one place they are mapped."""
    if isinstance(error, provider_types.ProviderUnavailable):
        # 503 when we hold back (circuit open, our own queue full); 504 timeout; 502 Stripe failed.
        held_back = error.kind == "rate_limited" or error.code == "circuit_open"
        status = 504 if error.kind == "timeout" else 503 if held_back else 502
        return ProviderUnavailable(
            "The payment processor is unavailable; retry with the same Idempotency-Key.",
            code=f"processor_{error.kind}",
            status=status,
            retry_after=max(1, round(error.retry_after or 1)) if status == 503 else None,
        )
    if isinstance(error, provider_types.ProviderInvalidRequest):
        return InvalidRequest(error.message, code=error.code or "processor_invalid_request", param=error.param)
    # Declines are answered by confirm itself; anything else here is the processor refusing us.
    return ProviderUnavailable("The payment processor refused the request.", code="processor_error", status=502)


def history_filter(
    user_id: uuid.UUID | None, statuses: Sequence[str], created_gte: datetime | None, created_lt: datetime | None
) -> repository.HistoryFilter:
    for status in statuses:
        if status not in PaymentStatus.__members__:
            raise InvalidRequest(f"Unknown status `{status}`.", code="parameter_invalid", param="status")
    return repository.HistoryFilter(
        user_id, tuple(statuses), _utc(created_gte, "created_gte"), _utc(created_lt, "created_lt")
    )


def _utc(value: datetime | None, param: str) -> datetime | None:
    """A bound PostgreSQL can compare with (instants.py: UTC, naive means UTC)."""
    return None if value is None else utc_instant(value, param, message="The date is out of range.")
