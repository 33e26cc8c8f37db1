"""Deciding reviews: list them, approve (capture), deny (cancel, or refund as fraudulent).

A decision is claimed on the review row first (`decision`, under the payment's lock), so
a person and the deadline job can never both move money; the same decision may run again
(a retried request, a crash half way): every processor call is keyed by the review's id.
Money moves through the payment and refund services (their own audit entries, budgets and
202s); the review closes after, so a crash leaves it open to decide again, never closed
with its money unmoved. Radar's reviews are approved at the processor too; a denial needs
no call of its own there (the processor closes its review when the payment is canceled or
refunded, and that `review.closed` finds this one closed already).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg

from paymentd import audit
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.errors import Conflict, InvalidRequest, NotFound
from paymentd.fraud import reviews
from paymentd.fraud.models import OPEN, REVIEW_STATUSES, Review
from paymentd.logs import log
from paymentd.payments import sql
from paymentd.payments.models import Payment
from paymentd.payments.repository import decode_cursor
from paymentd.payments.schemas import PaymentCancel, PaymentCapture
from paymentd.payments.service import CANCELABLE, PaymentService, translate
from paymentd.payments.states import PaymentStatus
from paymentd.payments.sync import Actor
from paymentd.providers import base as provider_types
from paymentd.refunds.schemas import RefundCreate
from paymentd.refunds.service import RefundService

Decision = Literal["approve", "deny"]
# Money captured and some of it still here: a denial refunds what is left.
REFUNDABLE = frozenset({PaymentStatus.succeeded, PaymentStatus.partially_refunded})
# Nothing left to take back: a denial only closes the review.
SETTLED = frozenset({PaymentStatus.canceled, PaymentStatus.refunded})
# paymentd's own decisions, by the deadline job: payment events say reconciler, the audit trail system.
DEADLINE_ACTOR = Actor("reconciler", audit_as=audit.Actor("system", "review_deadline"))


@dataclass(frozen=True)
class Decided:
    """A review after a decision, with its payment; `accepted` when the processor is still at it (202)."""

    review: Review
    payment: Payment
    accepted: bool = False


class ReviewService:
    def __init__(self, database: Database, payments: PaymentService, refunds: RefundService) -> None:
        self.database = database
        self.payments = payments
        self.refunds = refunds
        self.provider = payments.provider

    # ------------------------------------------------------------------ reads

    async def list(
        self, account_id: uuid.UUID, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[Sequence[Review], bool]:
        """Newest first, keyset-paged on (opened_at, id) like payment history."""
        if status is not None and status not in REVIEW_STATUSES:
            raise InvalidRequest(f"Unknown status `{status}`.", code="parameter_invalid", param="status")
        where, args = ["account_id = $1"], [account_id]
        if status is not None:
            args.append(status)
            where.append(f"status = ${len(args)}")
        if cursor:
            at, last_id = decode_cursor(cursor)
            args += [at, last_id]
            where.append(f"(opened_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        async with self.database.sql_connection() as conn:
            rows = await conn.fetch(
                f"SELECT {reviews.COLUMNS} FROM reviews WHERE {' AND '.join(where)}"
                f" ORDER BY opened_at DESC, id DESC LIMIT ${len(args)}", *args)
        found = [Review(**dict(r)) for r in rows]
        return found[:limit], len(found) > limit

    # ------------------------------------------------------------------ decisions

    async def approve(
        self, principal: Principal, review_id: uuid.UUID, request_id: str, *, wait_s: float,
        actor: Actor | None = None, closed_reason: str = "approved",
    ) -> Decided:
        """Approve: Radar's review approved at the processor, the authorization captured
        (a captured payment stays as it is), the review closed `approved`."""
        review, payment = await self._claim(principal, review_id, "approve")
        accepted = False
        try:
            if review.stripe_review_id is not None:
                await self._approve_at_processor(review)
            if PaymentStatus(payment.status) is PaymentStatus.requires_capture:
                outcome = await self.payments.capture(principal, PaymentCapture(payment_id=payment.id), request_id,
                                                      wait_s=wait_s, actor=actor)
                accepted = outcome.accepted
        except Exception:
            await self._release(review)
            raise
        return await self._close(review, "approved", closed_reason, actor, accepted)

    async def deny(
        self, principal: Principal, review_id: uuid.UUID, request_id: str, *, wait_s: float,
        actor: Actor | None = None, closed_reason: str = "denied",
    ) -> Decided:
        """Deny: the authorization canceled as fraudulent, or what was captured refunded as
        fraudulent (once: the refund is keyed by the review); the review closed `denied`."""
        review, payment = await self._claim(principal, review_id, "deny")
        status = PaymentStatus(payment.status)
        accepted = False
        try:
            if status in CANCELABLE:
                outcome = await self.payments.cancel(principal, PaymentCancel(payment_id=payment.id,
                                                                              reason="fraudulent"),
                                                     request_id, wait_s=wait_s, actor=actor)
                accepted = outcome.accepted
            elif status in REFUNDABLE:
                accepted = await self._refund(principal, review, payment, request_id, wait_s, actor)
        except Exception:
            await self._release(review)
            raise
        return await self._close(review, "denied", closed_reason, actor, accepted)

    async def _refund(self, principal: Principal, review: Review, payment: Payment, request_id: str,
                      wait_s: float, actor: Actor | None) -> bool:
        try:
            made = await self.refunds.create(principal, RefundCreate(payment_id=payment.id, reason="fraudulent"),
                                             request_id, seed=uuid.uuid5(review.id, "deny"), wait_s=wait_s,
                                             actor=actor)
        except Conflict as error:
            if error.code != "amount_exceeds_refundable":
                raise
            return False  # refunded in full already (by someone else): nothing left to take back
        return made.accepted

    async def _approve_at_processor(self, review: Review) -> None:
        try:
            await self.provider.approve_review(review.stripe_review_id,
                                               idempotency_key=f"paymentd:review:{review.id}:approve")
        except provider_types.ProviderInvalidRequest:
            # Closed there already. Approved (by a person in Stripe's dashboard): ours follows.
            # Anything else (refunded, disputed): its review.closed closes ours; not approvable.
            try:
                there = await self.provider.retrieve_review(review.stripe_review_id)
            except provider_types.ProviderError as error:
                raise translate(error) from error
            if there.open or there.closed_reason != "approved":
                raise Conflict(f"The processor closed this review ({there.closed_reason or 'open'}); it cannot "
                               "be approved.", code="review_closed", param="id") from None
        except provider_types.ProviderError as error:
            raise translate(error) from error

    async def _claim(self, principal: Principal, review_id: uuid.UUID, decision: Decision) -> tuple[Review, Payment]:
        """The review and its payment, the decision claimed; 404 for another account's,
        409 when closed, another decision is under way, or the payment's state forbids it."""
        async with self.database.sql_transaction() as conn:
            payment_id = await conn.fetchval("SELECT payment_id FROM reviews WHERE id = $1 AND account_id = $2",
                                             review_id, principal.account_id)
            if payment_id is None:
                raise NotFound("No such review.", param="id")
            payment = await sql.payment(conn, payment_id, lock=True)  # the payment's lock first, as always
            review = await _locked(conn, review_id)
            if review.status != OPEN:
                raise Conflict(f"This review is closed ({review.status}).", code="review_closed", param="id")
            if review.decision not in (None, decision):
                raise Conflict(f"This review is being decided ({review.decision}) already.",
                               code="review_decision_in_progress", param="id")
            _check_payment(payment, decision)
            await conn.execute("UPDATE reviews SET decision = $2 WHERE id = $1", review.id, decision)
            review.decision = decision
        return review, payment

    async def _release(self, review: Review) -> None:
        """The decision failed before its money moved: another one may be tried."""
        async with self.database.sql_transaction() as conn:
            await conn.execute("UPDATE reviews SET decision = NULL WHERE id = $1 AND status = 'open'", review.id)

    async def _close(self, review: Review, status: Literal["approved", "denied"], closed_reason: str,
                     actor: Actor | None, accepted: bool) -> Decided:
        """Close the review, and any other open review of the payment (the payment is decided)."""
        async with self.database.sql_transaction() as conn:
            payment = await sql.payment(conn, review.payment_id, lock=True)
            for open_review in [r for r in await reviews.of_payment(conn, payment.id) if r.status == OPEN]:
                await reviews.close(conn, open_review, payment=payment, status=status, closed_reason=closed_reason,
                                    actor=actor.audit() if actor else None)
            decided = await _locked(conn, review.id)
        log.info("review.decided", review_id=str(review.id), status=decided.status, accepted=accepted)
        return Decided(decided, payment, accepted)


def _check_payment(payment: Payment, decision: Decision) -> None:
    status = PaymentStatus(payment.status)
    if decision == "approve" and status not in {PaymentStatus.requires_capture, *REFUNDABLE}:
        raise Conflict(f"A payment in status `{status}` cannot be approved: only an authorized or captured one.",
                       code="invalid_state", param="id")
    if decision == "deny" and status not in {*CANCELABLE, *REFUNDABLE, *SETTLED}:
        raise Conflict(f"A payment in status `{status}` cannot be denied now.", code="invalid_state", param="id")


async def _locked(conn: asyncpg.Connection, review_id: uuid.UUID) -> Review:
    row = await conn.fetchrow(f"SELECT {reviews.COLUMNS} FROM reviews WHERE id = $1 FOR UPDATE", review_id)
    return Review(**dict(row))


def encode_cursor(review: Review) -> str:
    """A cursor `payments.repository.decode_cursor` reads: (opened_at, id)."""
    raw = json.dumps({"t": review.opened_at.isoformat(), "id": str(review.id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def system_principal(account_id: uuid.UUID) -> Principal:
    """The account's scope for paymentd's own decisions (no API key acts: `actor` says who)."""
    return Principal(account_id=account_id, api_key_id=uuid.UUID(int=0), scopes=frozenset())


__all__ = ["DEADLINE_ACTOR", "Decided", "ReviewService", "encode_cursor", "system_principal"]
