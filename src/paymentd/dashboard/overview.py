"""The overview's figures: the payments summary per day (reports/service.py, the same
definitions as GET /api/reports/summary), disputes, Stripe's health as this process
sees it, and the job queue's backlog (one queue for the whole deployment)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from paymentd.dashboard.charts import Day
from paymentd.db import Database
from paymentd.money import Money
from paymentd.reports import service as reports

RANGES = (7, 30, 90)  # days the overview offers


@dataclass
class Overview:
    days: list[Day]
    totals: reports.Tally
    success_rate: str | None
    volume: list[tuple[str, str, str]]  # currency, amount asked, amount received
    refunded: list[tuple[str, str, str]]  # currency, refunds requested, refunds succeeded
    declines: list[tuple[str, int]]
    disputes: dict[str, int]
    health: dict[str, Any]
    jobs: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)


def _money(minor: int, currency: str) -> str:
    return Money.from_minor(minor, currency).to_api()


def _all_days(span: reports.Window, groups: dict[str, reports.Tally]) -> list[Day]:
    days, at = [], span.start.date()
    while at <= (span.end - timedelta(microseconds=1)).date():
        key = at.isoformat()
        tally = groups.get(key, reports.Tally())
        days.append(Day(key, tally.payments, tally.succeeded, tally.attempted,
                        reports.success_rate(tally.succeeded, tally.attempted)))
        at += timedelta(days=1)
    return days


async def overview(database: Database, provider: object, account_id: uuid.UUID, days: int) -> Overview:
    now = datetime.now(UTC)
    span = reports.Window(now - timedelta(days=days), now)
    report = await reports.summary(database, account_id, span, "day")
    totals = report.totals
    async with database.sql_connection() as conn:
        disputes = await conn.fetchrow(
            "SELECT count(*) AS opened, count(*) FILTER (WHERE outcome IS NULL) AS open,"
            " count(*) FILTER (WHERE outcome = 'won') AS won, count(*) FILTER (WHERE outcome = 'lost') AS lost"
            " FROM disputes WHERE account_id = $1 AND created_at >= $2 AND created_at < $3",
            account_id, span.start, span.end)
        jobs = await job_backlog(conn)
    return Overview(
        days=_all_days(span, dict(report.groups)),
        totals=totals,
        success_rate=reports.success_rate(totals.succeeded, totals.attempted),
        volume=[(c, _money(s.amount, c), _money(s.received, c)) for c, s in sorted(totals.payment_sums.items())],
        refunded=[(c, _money(s.amount, c), _money(s.succeeded_amount, c)) for c, s in sorted(totals.refund_sums.items())],
        declines=totals.declines.most_common(),
        disputes=dict(disputes),
        health=stripe_health(provider),
        jobs=jobs,
    )


def stripe_health(provider: object) -> dict[str, Any]:
    """The circuit breaker and the outbound rate limiter of this process."""
    limiter = getattr(provider, "limiter", None)
    return {
        "circuit": getattr(provider, "circuit_state", "closed"),
        "limit_rps": getattr(limiter, "rps", None),
        "waiting": getattr(limiter, "waiting", 0) if limiter is not None else 0,
        "shared": bool(getattr(limiter, "shared", False)),
    }


async def job_backlog(conn: Any) -> dict[str, Any]:
    """Jobs by status, and how long the oldest job due to run has waited."""
    counts = {row["status"]: row["n"] for row in await conn.fetch(
        "SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs"
        " WHERE status IN ('todo', 'doing', 'failed') GROUP BY status")}
    oldest = await conn.fetchval(
        "SELECT min(coalesce(j.scheduled_at, e.at)) FROM procrastinate_jobs j"
        " JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred'"
        " WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())")
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else None
    return {"todo": counts.get("todo", 0), "doing": counts.get("doing", 0), "failed": counts.get("failed", 0),
            "oldest_age_s": max(0, round(age)) if age is not None else None}
