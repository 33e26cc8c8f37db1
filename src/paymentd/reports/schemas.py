"""The response of GET /api/reports/summary, and its rendering from service.Report.

    {
      "from": "2026-10-27T00:00:00Z", "to": "2026-11-26T00:00:00Z", "group_by": "day",
      "groups": [
        {
          "key": "2026-11-25",
          "payments": {
            "count": 20, "attempted": 19, "succeeded": 18, "success_rate": "0.9474",
            "amounts": [
              {"currency": "eur", "count": 5, "total": "120.00", "received": "100.00",
               "refunded": "10.00", "net": "90.00"},
              {"currency": "usd", "count": 15, ...}
            ]
          },
          "refunds": {"count": 2, "succeeded": 2, "failed": 0,
                      "amounts": [{"currency": "eur", "count": 1, "total": "10.00", "succeeded": "10.00"}, ...]},
          "declines": [{"decline_code": "insufficient_funds", "count": 1}]
        }
      ],
      "totals": { "payments": {...}, "refunds": {...}, "declines": [...] }
    }

Amounts are the API's decimal strings, one entry per currency (sorted by code),
never summed across currencies. Declines are sorted by count, most frequent first.
service.py says what each figure counts.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from paymentd.money import Money
from paymentd.reports.service import GroupBy, Report, Tally, success_rate


class PaymentAmounts(BaseModel):
    currency: str = Field(description="ISO 4217 code, lower case")
    count: int = Field(description="Payments in this currency")
    total: str = Field(description="Sum of the payments' amounts (what was asked for)")
    received: str = Field(description="Sum captured (`amount_received`)")
    refunded: str = Field(description="Sum refunded (`amount_refunded`: refunds Stripe accepted, not failed)")
    net: str = Field(description="received - refunded (before Stripe fees and disputes)")


class PaymentsSummary(BaseModel):
    count: int = Field(description="Payments created in the range")
    attempted: int = Field(description="Payments confirmed at least once")
    succeeded: int = Field(description="Payments charged: succeeded, partially_refunded, refunded or disputed")
    success_rate: str | None = Field(
        description="succeeded / attempted, four decimals; null when nothing was attempted", examples=["0.9500"]
    )
    amounts: list[PaymentAmounts]


class RefundAmounts(BaseModel):
    currency: str
    count: int = Field(description="Refunds requested and not failed or canceled")
    total: str = Field(description="Their sum (pending, requires_action and succeeded)")
    succeeded: str = Field(description="The part Stripe has completed")


class RefundsSummary(BaseModel):
    count: int = Field(description="Refunds of these payments, requested and not failed or canceled")
    succeeded: int
    failed: int = Field(description="Failed or canceled refunds (their amounts are not in `amounts`)")
    amounts: list[RefundAmounts]


class DeclineCount(BaseModel):
    decline_code: str = Field(
        description="The processor's decline code, else the error code (e.g. expired_card), else `unknown`",
        examples=["insufficient_funds"],
    )
    count: int = Field(description="Failed confirm attempts with this reason")


class Summary(BaseModel):
    payments: PaymentsSummary
    refunds: RefundsSummary
    declines: list[DeclineCount]


class SummaryGroup(Summary):
    key: str = Field(
        description="The group: a UTC day (YYYY-MM-DD), a currency, a payment status or a payment method type",
        examples=["2026-11-26"],
    )


class ReportOut(BaseModel):
    """Payments created in [from, to) of the key's account, grouped; `totals` over all of them."""

    from_: datetime = Field(alias="from", serialization_alias="from", description="Start of the range (inclusive)")
    to: datetime = Field(description="End of the range (exclusive)")
    group_by: GroupBy
    groups: list[SummaryGroup] = Field(description="Groups with at least one payment, ordered by key")
    totals: Summary


def _money(minor: int, currency: str) -> str:
    return Money.from_minor(minor, currency).to_api()


def present_summary(tally: Tally) -> dict:
    return {
        "payments": PaymentsSummary(
            count=tally.payments,
            attempted=tally.attempted,
            succeeded=tally.succeeded,
            success_rate=success_rate(tally.succeeded, tally.attempted),
            amounts=[
                PaymentAmounts(
                    currency=currency,
                    count=sums.count,
                    total=_money(sums.amount, currency),
                    received=_money(sums.received, currency),
                    refunded=_money(sums.refunded, currency),
                    net=_money(sums.received - sums.refunded, currency),
                )
                for currency, sums in sorted(tally.payment_sums.items())
            ],
        ),
        "refunds": RefundsSummary(
            count=tally.refunds,
            succeeded=tally.refunds_succeeded,
            failed=tally.refunds_failed,
            amounts=[
                RefundAmounts(
                    currency=currency,
                    count=sums.count,
                    total=_money(sums.amount, currency),
                    succeeded=_money(sums.succeeded_amount, currency),
                )
                for currency, sums in sorted(tally.refund_sums.items())
            ],
        ),
        "declines": [
            DeclineCount(decline_code=code, count=count)
            for code, count in sorted(tally.declines.items(), key=lambda item: (-item[1], item[0]))
        ],
    }


def present_report(report: Report) -> ReportOut:
    return ReportOut.model_validate(
        {
            "from": report.window.start,
            "to": report.window.end,
            "group_by": report.group_by,
            "groups": [SummaryGroup(key=key, **present_summary(tally)) for key, tally in report.groups],
            "totals": Summary(**present_summary(tally=report.totals)),
        }
    )
