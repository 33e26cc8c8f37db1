"""HTTP route of GET /api/reports/summary: parse -> service -> schema. No SQL, no Stripe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.deps import get_database, require
from paymentd.http import ExactJSONRoute
from paymentd.reports import service as reports
from paymentd.reports.schemas import ReportOut, present_report
from paymentd.schemas import API_ERRORS

router = APIRouter(prefix="/api/reports", tags=["reports"], route_class=ExactJSONRoute, responses=API_ERRORS)

_INSTANT = "ISO 8601 date or date-time (no offset means UTC; a bare date is midnight UTC)"


@router.get("/summary", response_model=ReportOut)
async def report_summary(
    database: Annotated[Database, Depends(get_database)],
    principal: Annotated[Principal, Depends(require(Scope.reports_read))],
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=64, description=f"Start, inclusive: {_INSTANT}. Default: `to` - 30 days",
              examples=["2026-11-01T00:00:00Z"]),
    ] = None,
    to: Annotated[
        str | None,
        Query(max_length=64, description=f"End, exclusive: {_INSTANT}. Default: now", examples=["2026-12-01"]),
    ] = None,
    group_by: Annotated[reports.GroupBy, Query(description="How payments are grouped; days are UTC")] = "day",
) -> ReportOut:
    """Counts and sums of the account's payments created in [from, to), at most 366 days:
    success rate, refunds and decline reasons, per group and in total; sums per currency."""
    span = reports.window(from_, to, now=datetime.now(UTC))
    return present_report(await reports.summary(database, principal.account_id, span, group_by))
