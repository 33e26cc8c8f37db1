"""The payments summary: counts and per-currency sums of an account's payments over a
time range, their success rate, their refunds and why their confirm attempts failed.

What the figures mean (API.md, "Reports"; the response is drawn in schemas.py):

* The range is half-open, ``[from, to)``, on the payment's ``created_at``; every
  figure is about the payments created in it: their refunds and their failed
  attempts are counted with them, whenever those happened (a cohort view, and the
  one the ``payments_account_created`` index serves; refunds and attempts are
  reached through their payment). Defaults: ``to`` = now, ``from`` = ``to`` - 30
  days; the range is at most 366 days. Times without an offset are UTC; a bare date
  is midnight UTC.
* ``group_by``: ``day`` (UTC calendar day of ``created_at``, key ``YYYY-MM-DD``),
  ``currency``, ``status`` (the payment's status now) or ``payment_method_type``
  (the type of the method that was charged, else the first of the payment's
  ``payment_method_types``). Groups without payments are left out; groups are
  ordered by key. ``totals`` is the same summary over the whole range.
* Money is never added across currencies: every sum is per currency, in minor
  units here, rendered as the API's decimal strings by schemas.py.
* ``succeeded`` counts payments whose charge went through: succeeded,
  partially_refunded, refunded or disputed. ``attempted`` counts payments confirmed
  at least once with a confirmation Stripe accepted to try: one Stripe refused as an
  invalid request (an unknown or unusable payment method) asked no card, so it is
  neither an attempt nor a decline. ``success_rate`` = succeeded / attempted (a payment never confirmed
  is not a failure of the payment system; one still in flight counts as not yet
  succeeded), with four decimals, ``null`` when nothing was attempted.
* Refunds: ``count`` and ``total`` are refunds requested and not failed or canceled
  (pending, requires_action, succeeded: what is reserved against the payments);
  ``succeeded`` is the part Stripe has completed; ``failed`` counts failed and
  canceled ones. A payment's ``refunded`` is its ``amount_refunded`` (refunds Stripe
  accepted and did not fail, as refunds/service.py defines it).
* Declines: confirm attempts that ended ``failed``, by ``decline_code``, or by the
  error code when the processor gave no decline code (e.g. ``expired_card``).

Three aggregate queries (payments, refunds, failed attempts), each grouped by
(key, currency or reason), in one read-only REPEATABLE READ transaction so they
describe the same moment.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from sqlalchemy import ColumnElement, exists, func, select, text

from paymentd.db import Database
from paymentd.errors import InvalidRequest
from paymentd.instants import utc_instant
from paymentd.payments.models import Payment, PaymentAttempt
from paymentd.payments.states import PaymentStatus
from paymentd.refunds import models as refunds

GroupBy = Literal["day", "currency", "status", "payment_method_type"]
GROUP_BYS: tuple[str, ...] = get_args(GroupBy)

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)

# The charge went through (what happened to the money afterwards is in the sums).
SUCCEEDED = (
    PaymentStatus.succeeded,
    PaymentStatus.partially_refunded,
    PaymentStatus.refunded,
    PaymentStatus.disputed,
)
REFUNDS_FAILED = (refunds.FAILED, refunds.CANCELED)
REFUSED = "refused"  # payments/service.py: Stripe refused the confirm itself; no card was asked


# --- the range ------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC


def _instant(raw: str, param: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is UTC (instants.py: in range)."""
    message = f"`{param}` must be an ISO 8601 date or date-time, e.g. 2026-11-01 or 2026-11-01T00:00:00Z."
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidRequest(message, code="parameter_invalid", param=param) from None
    return utc_instant(parsed, param)


def window(raw_from: str | None, raw_to: str | None, *, now: datetime) -> Window:
    """The range asked for, with the defaults filled in and the limits checked."""
    end = _instant(raw_to, "to") if raw_to is not None else now.astimezone(UTC)
    if raw_from is not None:
        start = _instant(raw_from, "from")
    else:
        try:
            start = end - DEFAULT_RANGE
        except OverflowError:
            raise InvalidRequest("`to` is too early.", code="parameter_invalid", param="to") from None
    if start >= end:
        raise InvalidRequest("`from` must be earlier than `to`.", code="parameter_invalid", param="from")
    if end - start > MAX_RANGE:
        raise InvalidRequest(
            f"The range from `from` to `to` may span at most {MAX_RANGE.days} days.",
            code="parameter_invalid",
            param="from",
        )
    return Window(start, end)


# --- what is counted --------------------------------------------------------------


@dataclass
class PaymentSums:
    """One currency's payments, in minor units."""

    count: int = 0
    amount: int = 0  # what was asked for
    received: int = 0  # captured
    refunded: int = 0  # payments.amount_refunded


@dataclass
class RefundSums:
    count: int = 0  # requested, not failed or canceled
    amount: int = 0
    succeeded_amount: int = 0


@dataclass
class Tally:
    payments: int = 0
    attempted: int = 0
    succeeded: int = 0
    payment_sums: dict[str, PaymentSums] = field(default_factory=dict)
    refunds: int = 0
    refunds_succeeded: int = 0
    refunds_failed: int = 0
    refund_sums: dict[str, RefundSums] = field(default_factory=dict)
    declines: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.payments += other.payments
        self.attempted += other.attempted
        self.succeeded += other.succeeded
        for currency, sums in other.payment_sums.items():
            mine = self.payment_sums.setdefault(currency, PaymentSums())
            mine.count += sums.count
            mine.amount += sums.amount
            mine.received += sums.received
            mine.refunded += sums.refunded
        self.refunds += other.refunds
        self.refunds_succeeded += other.refunds_succeeded
        self.refunds_failed += other.refunds_failed
        for currency, rsums in other.refund_sums.items():
            rmine = self.refund_sums.setdefault(currency, RefundSums())
            rmine.count += rsums.count
            rmine.amount += rsums.amount
            rmine.succeeded_amount += rsums.succeeded_amount
        self.declines.update(other.declines)


@dataclass
class Report:
    window: Window
    group_by: GroupBy
    groups: list[tuple[str, Tally]]  # ordered by key
    totals: Tally


def success_rate(succeeded: int, attempted: int) -> str | None:
    """succeeded / attempted to four decimals ("0.9500"), rounded half up; exact."""
    if attempted <= 0:
        return None
    scaled = (2 * succeeded * 10_000 + attempted) // (2 * attempted)
    return f"{scaled // 10_000}.{scaled % 10_000:04d}"


# --- the queries ------------------------------------------------------------------


def _group_key(group_by: GroupBy) -> ColumnElement[str]:
    if group_by == "day":
        return func.to_char(func.timezone("UTC", Payment.created_at), "YYYY-MM-DD")
    if group_by == "currency":
        return Payment.currency
    if group_by == "status":
        return Payment.status
    return func.coalesce(
        Payment.payment_method_details["type"].astext, Payment.payment_method_types[1], "unknown"
    )


async def summary(database: Database, account_id: uuid.UUID, span: Window, group_by: GroupBy) -> Report:
    key = _group_key(group_by).label("group_key")
    # Every query starts from the account's payments in the range (the index
    # payments_account_created); the key's expression carries bound parameters, so
    # GROUP BY names the output column rather than repeating it.
    in_range = (
        Payment.account_id == account_id,
        Payment.created_at >= span.start,
        Payment.created_at < span.end,
    )
    # An attempt Stripe refused as an invalid request (an unknown payment method, say)
    # asked no card: a payment with only such attempts was not attempted.
    reached_the_card = exists().where(PaymentAttempt.payment_id == Payment.id, PaymentAttempt.outcome != REFUSED)
    payments_q = (
        select(
            key,
            Payment.currency,
            func.count(),
            func.count().filter(Payment.attempt_count > 0, reached_the_card),
            func.count().filter(Payment.status.in_(SUCCEEDED)),
            func.sum(Payment.amount),
            func.sum(Payment.amount_received),
            func.sum(Payment.amount_refunded),
        )
        .where(*in_range)
        .group_by("group_key", Payment.currency)
    )
    refunds_q = (
        select(
            key,
            refunds.Refund.currency,
            func.count().filter(refunds.Refund.status.in_(refunds.HOLDING)),
            func.count().filter(refunds.Refund.status == refunds.SUCCEEDED),
            func.count().filter(refunds.Refund.status.in_(REFUNDS_FAILED)),
            func.coalesce(func.sum(refunds.Refund.amount).filter(refunds.Refund.status.in_(refunds.HOLDING)), 0),
            func.coalesce(func.sum(refunds.Refund.amount).filter(refunds.Refund.status == refunds.SUCCEEDED), 0),
        )
        .select_from(Payment)
        .join(refunds.Refund, refunds.Refund.payment_id == Payment.id)
        # A refund belongs to its payment's account: scoping the payments scopes it.
        # (refunds has no account index; the payments' one is where the plan starts.)
        .where(*in_range)
        .group_by("group_key", refunds.Refund.currency)
    )
    reason = func.coalesce(PaymentAttempt.decline_code, PaymentAttempt.error_code, "unknown").label("reason")
    declines_q = (
        select(key, reason, func.count())
        .select_from(Payment)
        .join(PaymentAttempt, PaymentAttempt.payment_id == Payment.id)
        .where(*in_range, PaymentAttempt.outcome == "failed")
        .group_by("group_key", "reason")
    )

    tallies: dict[str, Tally] = {}
    async with database.transaction() as session:
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        for k, currency, count, attempted, succeeded, amount, received, refunded in await session.execute(payments_q):
            tally = tallies.setdefault(k, Tally())
            tally.payments += count
            tally.attempted += attempted
            tally.succeeded += succeeded
            tally.payment_sums[currency] = PaymentSums(count, int(amount), int(received), int(refunded))
        for k, currency, count, done, failed, amount, done_amount in await session.execute(refunds_q):
            tally = tallies.setdefault(k, Tally())
            tally.refunds += count
            tally.refunds_succeeded += done
            tally.refunds_failed += failed
            if count:
                tally.refund_sums[currency] = RefundSums(count, int(amount), int(done_amount))
        for k, code, count in await session.execute(declines_q):
            tallies.setdefault(k, Tally()).declines[code] += count

    totals = Tally()
    groups = sorted(tallies.items())
    for _, tally in groups:
        totals.add(tally)
    return Report(span, group_by, groups, totals)
