"""GET /api/reports/summary as CSV (`Accept: text/csv`): the same figures as the JSON,
one fact per row, so the columns never depend on which currencies or reasons occur
and a spreadsheet's pivot table rebuilds any view:

    key,section,name,currency,value
    2026-11-25,payments,count,,20
    2026-11-25,payments,success_rate,,0.9474
    2026-11-25,payments,total,eur,120.00
    2026-11-25,declines,insufficient_funds,,1
    totals,payments,count,,20

`key` is the group (`totals` for the whole range); sections and names are the JSON's
(`payments.amounts[].total` is `payments,total,<currency>`); money is the API's decimal
string, never summed across currencies; an empty success rate means nothing was attempted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from paymentd.reports.schemas import ReportOut, Summary

HEADER = ("key", "section", "name", "currency", "value")
TOTALS = "totals"


def _rows(key: str, summary: Summary) -> Iterator[tuple[str, str, str, str, str]]:
    p = summary.payments
    for name, value in (("count", p.count), ("attempted", p.attempted), ("succeeded", p.succeeded),
                        ("success_rate", p.success_rate)):
        yield key, "payments", name, "", "" if value is None else str(value)
    for amounts in p.amounts:
        for name in ("count", "total", "received", "refunded", "net"):
            yield key, "payments", name, amounts.currency, str(getattr(amounts, name))
    r = summary.refunds
    for name, count in (("count", r.count), ("succeeded", r.succeeded), ("failed", r.failed)):
        yield key, "refunds", name, "", str(count)
    for refunds in r.amounts:
        for name in ("count", "total", "succeeded"):
            yield key, "refunds", name, refunds.currency, str(getattr(refunds, name))
    for decline in summary.declines:
        yield key, "declines", decline.decline_code, "", str(decline.count)


def render(report: ReportOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(HEADER)
    for group in report.groups:
        writer.writerows(_rows(group.key, group))
    writer.writerows(_rows(TOTALS, report.totals))
    return out.getvalue()


def filename(report: ReportOut) -> str:
    return (f"paymentd-summary-{report.group_by}-{report.from_:%Y%m%dT%H%M%SZ}-{report.to:%Y%m%dT%H%M%SZ}.csv")
