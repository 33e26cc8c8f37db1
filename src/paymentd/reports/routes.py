"""HTTP route of GET /api/reports/summary: parse -> service -> schema. No SQL, no Stripe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.deps import get_database, require
from paymentd.http import ExactJSONRoute
from paymentd import negotiation
from paymentd.reports import csv_report
from paymentd.reports import service as reports
from paymentd.reports.schemas import ReportOut, present_report
from paymentd.schemas import API_ERRORS

router = APIRouter(prefix="/api/reports", tags=["reports"], route_class=ExactJSONRoute, responses=API_ERRORS)

_INSTANT = "ISO 8601 date or date-time (no offset means UTC; a bare date is midnight UTC)"


JSON, CSV = "application/json", "text/csv"
OFFERED = (JSON, CSV)


@router.get("/summary", response_model=ReportOut,
            responses={200: {"content": {CSV: {"schema": {"type": "string"}, "example": csv_report.__doc__}},
                             "description": "JSON, or CSV with `Accept: text/csv` (one fact per row)"}})
async def report_summary(
    request: Request,
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
) -> ReportOut | Response:
    """Counts and sums of the account's payments created in [from, to), at most 366 days:
    success rate, refunds and decline reasons, per group and in total; sums per currency.
    As CSV with `Accept: text/csv`; 406 for an `Accept` it can serve neither way."""
    media = negotiation.negotiate(request.headers.get("accept"), OFFERED, "The report")  # before any work
    span = reports.window(from_, to, now=datetime.now(UTC))
    report = present_report(await reports.summary(database, principal.account_id, span, group_by))
    if media == CSV:
        return Response(csv_report.render(report), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{csv_report.filename(report)}"'})
    return report
