"""The post-authorization stage: paymentd's rules on Radar's verdict, once per attempt.

Every report of a PaymentIntent (the confirm's answer, a webhook, the reconciler)
ends in one of three places that record it under the payment's lock
(`PaymentService._record`, `webhooks.inbox._apply_payment`, `payments.sync.refresh`);
each calls `evaluate` there, in its transaction, next to the processor's own review.
The first report showing the attempt authorized (requires_capture or succeeded) with
Radar's verdict runs the post-auth rules; the decision is stored with the attempt's
number, so a later report (the webhook after the answer, twice) finds it and runs none.

What a decision does:
- `review`: the payment's rule review is opened in the same transaction. Authorized
  only (manual capture), it stays uncaptured until approved or denied; captured
  already (automatic capture), the review stays open and a denial refunds.
- `block`: money must move at the processor, which never happens inside a transaction.
  The decision is stored with `outcome` NULL; after the commit `enforce` cancels the
  authorization (reason fraudulent) through PaymentService.cancel, or, captured already,
  refunds in full (reason fraudulent) through RefundService.create keyed by the decision
  (one refund however often it runs). It then sets the decision's `outcome`. A crash in
  between leaves `outcome` NULL: the reconciler's sweep (`enforce_due`) finishes it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit
from paymentd.db import Database
from paymentd.errors import Conflict
from paymentd.fraud import inputs, reviews, store
from paymentd.logs import log
from paymentd.payments.models import Payment
from paymentd.payments.states import PaymentStatus
from paymentd.providers.base import PaymentProvider

if TYPE_CHECKING:
    from paymentd.fraud.gate import FraudGate
    from paymentd.payments import sync
    from paymentd.payments.service import PaymentService
    from paymentd.refunds.service import RefundService

# An attempt authorized (its money held) or captured: Radar's verdict is final.
AUTHORIZED = frozenset({PaymentStatus.requires_capture, PaymentStatus.succeeded})
CANCELED, REFUNDED = "canceled", "refunded"
# Payments whose post-auth block is due, noted by `evaluate` for the caller to enforce
# after its commit (the webhook inbox, whose transaction is deep in its own code).
_due: ContextVar[list[uuid.UUID] | None] = ContextVar("paymentd_post_auth_due", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[uuid.UUID]]:
    """Collect the payments whose block `evaluate` decided while this lasts."""
    due: list[uuid.UUID] = []
    token = _due.set(due)
    try:
        yield due
    finally:
        _due.reset(token)


def _may_run(payment: Payment) -> bool:
    return bool(payment.attempt_count) and payment.risk_level is not None and \
        PaymentStatus(payment.status) in AUTHORIZED


async def _decided(conn: asyncpg.Connection, payment: Payment) -> bool:
    return bool(await conn.fetchval(
        "SELECT 1 FROM fraud_decisions WHERE payment_id = $1 AND stage = $2 AND attempt = $3",
        payment.id, inputs.POST_AUTH, payment.attempt_count))


async def due(conn: asyncpg.Connection, enabled: bool, payment: Payment) -> bool:
    """Would `evaluate` decide something on the payment as it stands (a report that changes
    nothing else still brings this, when no earlier report ran the post-auth rules)?"""
    if not enabled or not _may_run(payment) or await _decided(conn, payment):
        return False
    return bool((await store.current(conn, payment.account_id)).at(inputs.POST_AUTH))


async def evaluate(sink: AsyncSession | asyncpg.Connection, gate: FraudGate | None, payment: Payment,
                   who: audit.Actor | None) -> store.Decision | None:
    """Run the post-auth rules on the payment's current attempt, once (the caller holds the
    payment's lock and has written the report onto it). Returns the stored decision when
    one was made now; its `block` is the caller's to `enforce` after the commit."""
    if gate is None or not gate.enabled or not _may_run(payment):
        return None  # no authorization, or no verdict from Radar yet
    conn = await reviews._conn(sink)  # an ORM session flushed first
    attempt = payment.attempt_count
    if await _decided(conn, payment):
        return None  # decided by an earlier report of this attempt
    decision = await gate.after_authorization(conn, payment, risk_level=payment.risk_level,
                                              risk_score=payment.risk_score)
    if decision is None:
        return None  # the account runs no post-auth rule
    decision.attempt = attempt
    await store.insert(conn, decision, who or audit.Actor("system", "fraud_post_auth"))
    if decision.fired:  # the payment's `risk.rules`, every stage's added up
        payment.risk_rules = list(dict.fromkeys([*(payment.risk_rules or []), *decision.fired]))
        await conn.execute("UPDATE payments SET risk_rules = $2 WHERE id = $1", payment.id, payment.risk_rules)
    log.info("fraud.post_auth", payment_id=str(payment.id), attempt=attempt, action=decision.action,
             fired=decision.fired, rule_set_version=decision.rule_set_version)
    if decision.action == "review":
        await reviews.open_review(sink, payment=payment, reason=f"fraud rules: {', '.join(decision.fired)}"[:200],
                                  source="rule", actor=who)
    elif decision.action == "block":
        if (due := _due.get()) is not None:
            due.append(payment.id)
    return decision


def _actor() -> sync.Actor:
    from paymentd.payments.sync import Actor  # late: payments.sync imports this module

    # paymentd's own decision: payment events say reconciler, the audit trail system.
    return Actor("reconciler", audit_as=audit.Actor("system", "fraud_post_auth"))


async def enforce(database: Database, provider: PaymentProvider, payment_id: uuid.UUID, *,
                  payments: PaymentService | None = None, refunds: RefundService | None = None,
                  wait_s: float = 10.0) -> None:
    """Carry out the payment's post-auth blocks not carried out yet: cancel the
    authorization, or refund what was captured, both as fraudulent. Never raises: what
    fails stays due for the reconciler's sweep."""
    # Late: these import the payment service, which imports this module.
    from paymentd.fraud.service import system_principal
    from paymentd.payments.schemas import PaymentCancel
    from paymentd.payments.service import PaymentService
    from paymentd.refunds.schemas import RefundCreate
    from paymentd.refunds.service import RefundService

    async with database.sql_connection() as conn:
        rows = await conn.fetch(
            "SELECT d.id, d.account_id, p.status FROM fraud_decisions d JOIN payments p ON p.id = d.payment_id"
            " WHERE d.payment_id = $1 AND d.stage = $2 AND d.action = 'block' AND d.outcome IS NULL"
            " ORDER BY d.created_at", payment_id, inputs.POST_AUTH)
    if not rows:
        return
    payments = payments or PaymentService(database, provider)
    refunds = refunds or RefundService(database, provider, payments.background)
    actor = _actor()
    for row in rows:
        decision_id, status = row["id"], PaymentStatus(row["status"])
        principal = system_principal(row["account_id"])
        request_id = f"post_auth:{decision_id}"
        done: str | None
        try:
            if status is PaymentStatus.requires_capture:
                outcome = await payments.cancel(principal, PaymentCancel(payment_id=payment_id, reason="fraudulent"),
                                                request_id, wait_s=wait_s, actor=actor)
                done = CANCELED if PaymentStatus(outcome.payment.status) is PaymentStatus.canceled else None
            elif status in (PaymentStatus.succeeded, PaymentStatus.partially_refunded):
                try:
                    # Keyed by the decision: one refund however often this runs.
                    await refunds.create(principal, RefundCreate(payment_id=payment_id, reason="fraudulent"),
                                         request_id, seed=uuid.uuid5(decision_id, "post_auth_block"),
                                         wait_s=wait_s, actor=actor)
                except Conflict as error:
                    if error.code != "amount_exceeds_refundable":
                        raise
                # Reserved (the refund's own sending is settled by the reconciler if Stripe failed).
                done = REFUNDED
            elif status in (PaymentStatus.canceled, PaymentStatus.refunded):
                done = f"already {status.value}"
            else:
                done = None  # processing (a capture under way): next time
        except Exception:  # noqa: BLE001 - stays due for the sweep
            log.exception("fraud.post_auth_enforce_failed", payment_id=str(payment_id), decision=str(decision_id))
            continue
        if done is not None:
            async with database.sql_connection() as conn:
                await conn.execute("UPDATE fraud_decisions SET outcome = $2 WHERE id = $1 AND outcome IS NULL",
                                   decision_id, done)
            log.info("fraud.post_auth_enforced", payment_id=str(payment_id), decision=str(decision_id), outcome=done)


async def enforce_due(database: Database, provider: PaymentProvider, *, older_than: timedelta,
                      limit: int = 100) -> int:
    """The reconciler's pass: post-auth blocks left undone (a crash after the commit)."""
    async with database.sql_connection() as conn:
        ids = await conn.fetch(
            "SELECT DISTINCT payment_id FROM fraud_decisions WHERE stage = $1 AND action = 'block'"
            " AND outcome IS NULL AND created_at < $2 LIMIT $3",
            inputs.POST_AUTH, datetime.now(UTC) - older_than, limit)
    for row in ids:
        await enforce(database, provider, row["payment_id"])
    return len(ids)
