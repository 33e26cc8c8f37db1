"""The review deadline: a review of an uncaptured payment that nobody decides is decided
by paymentd before the authorization can lapse (fraud/settings.py: six days by default,
denied by default), and the review says so (`closed_reason` deadline_approved or
deadline_denied). Runs periodically on the job queue and as `paymentd reviews decide-due`.

Reviews whose payment is already captured have no authorization to lose and get no
deadline (reviews.open_review): they wait for a person, as at Stripe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from paymentd.audit import context as audit_context
from paymentd.errors import PaymentdError
from paymentd.fraud import settings as fraud_settings
from paymentd.fraud.reviews import CAPTURED
from paymentd.fraud.service import DEADLINE_ACTOR, ReviewService, system_principal
from paymentd.jobs.deps import Deps
from paymentd.logs import log
from paymentd.payments.service import PaymentService
from paymentd.refunds.service import RefundService

BATCH = 100
CLOSED_REASON = {"approve": "deadline_approved", "deny": "deadline_denied"}
# No caller waits: the processor gets the time it needs (the result is recorded either way).
WAIT_S = 30.0


@dataclass
class DeadlineReport:
    approved: int = 0
    denied: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


async def decide_due(deps: Deps, *, now: datetime | None = None) -> DeadlineReport:
    """Decide every open review past its deadline, as its account says (approve or deny)."""
    now = now or datetime.now(UTC)
    async with deps.database.sql_connection() as conn:
        # A payment captured since its review opened (by its merchant) has no authorization
        # left to lose: its review waits for a person.
        due = await conn.fetch(
            "SELECT r.id, r.account_id, r.decision, a.review_deadline_action FROM reviews r"
            " JOIN accounts a ON a.id = r.account_id JOIN payments p ON p.id = r.payment_id"
            " WHERE r.status = 'open' AND r.deadline_at <= $1 AND NOT p.status = ANY($3)"
            " ORDER BY r.deadline_at LIMIT $2", now, BATCH, [s.value for s in CAPTURED])
    report = DeadlineReport()
    if not due:
        return report
    payments = PaymentService(deps.database, deps.provider)
    service = ReviewService(deps.database, payments, RefundService(deps.database, deps.provider, payments.background))
    with audit_context.acting(audit_context.Actor("system", "review_deadline")):
        for row in due:
            # A decision left under way (its process died) is finished as it was begun.
            action = (row["decision"] or row["review_deadline_action"]
                      or fraud_settings.DEFAULT_REVIEW_DEADLINE_ACTION)
            decide = service.approve if action == "approve" else service.deny
            try:
                await decide(system_principal(row["account_id"]), row["id"], "review_deadline", wait_s=WAIT_S,
                             actor=DEADLINE_ACTOR, closed_reason=CLOSED_REASON[action])
            except PaymentdError as error:  # decided meanwhile, or the payment moved: next run looks again
                report.errors.append(f"review {row['id']}: {error.code}")
                log.warning("review.deadline_failed", review_id=str(row["id"]), code=error.code)
                continue
            if action == "approve":
                report.approved += 1
            else:
                report.denied += 1
    await payments.background.drain(timeout=WAIT_S)
    log.info("review.deadlines", approved=report.approved, denied=report.denied, errors=len(report.errors))
    return report
