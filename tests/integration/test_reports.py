"""GET /api/reports/summary through paymentd's HTTP API: one shop's payments (usd and eur,
charged, declined, refunded, never confirmed, on other days) summarised by every
group_by, sums kept per currency, another account's payments never counted, and
every bad input refused with the error envelope."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from paymentd.auth.keys import Scope
from paymentd.db import Database
from paymentd.payments.models import Payment
from tests.conftest import make_key

SUMMARY = "/api/reports/summary"
DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
# Outside the main range; the half-open boundary is tested on it.
OLD = datetime(2025, 1, 15, tzinfo=UTC)


@dataclass
class Shop:
    account: str  # its name, for more keys of the same account
    client: httpx.AsyncClient
    today_keys: set[str]  # UTC days of the payments made now (a run may straddle midnight)
    earlier_day: str  # the day the never-confirmed eur payment was moved to
    range: dict[str, str]  # from/to covering every payment except the OLD one


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def create(client: httpx.AsyncClient, user_id: str, amount: str, **fields: object) -> dict:
    response = await client.post("/api/payments/create", json={"user_id": user_id, "amount": amount, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def confirm(client: httpx.AsyncClient, payment_id: str, method: str, expect: int = 200) -> dict:
    response = await client.post("/api/payments/confirm", json={"payment_id": payment_id, "payment_method": method})
    assert response.status_code == expect, response.text
    return response.json()


async def move_created_at(database: Database, payment_id: str, moment: datetime) -> None:
    async with database.transaction() as session:
        await session.execute(update(Payment).where(Payment.id == uuid.UUID(payment_id)).values(created_at=moment))


@pytest.fixture(scope="module")
async def shop(paymentd, database: Database) -> AsyncIterator[Shop]:  # type: ignore[no-untyped-def]
    """One account's payments, built once for the module:

    A usd 10.00  visa                                   -> succeeded
    B usd 20.00  declined (insufficient_funds), visa    -> succeeded
    C usd  5.00  declined (insufficient_funds)          -> requires_payment_method
    E eur  7.00  sepa_debit, never confirmed, 3 days ago -> requires_payment_method
    F eur 30.00  visa, 12.50 refunded                   -> partially_refunded
    G usd  9.00  visa, created at OLD (out of the main range)
    """
    account = f"reports-{uuid.uuid4().hex[:8]}"
    _, key = await make_key(database, account, list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        started = datetime.now(UTC)
        user = await client.post("/api/users", json={"email": "shop@example.com", "name": "Shop"})
        assert user.status_code == 201, user.text
        user_id = user.json()["id"]

        a = await create(client, user_id, "10.00")
        assert (await confirm(client, a["id"], "pm_card_visa"))["status"] == "succeeded"
        b = await create(client, user_id, "20.00")
        declined = await confirm(client, b["id"], DECLINE, expect=402)
        assert declined["error"]["decline_code"] == "insufficient_funds"
        assert (await confirm(client, b["id"], "pm_card_visa"))["status"] == "succeeded"
        c = await create(client, user_id, "5.00")
        await confirm(client, c["id"], DECLINE, expect=402)
        e = await create(client, user_id, "7.00", currency="eur", payment_method_types=["sepa_debit"])
        f = await create(client, user_id, "30.00", currency="eur")
        assert (await confirm(client, f["id"], "pm_card_visa"))["status"] == "succeeded"
        refund = await client.post("/api/payments/refund", json={"payment_id": f["id"], "amount": "12.50"})
        assert refund.status_code == 201 and refund.json()["status"] == "succeeded", refund.text
        g = await create(client, user_id, "9.00")
        assert (await confirm(client, g["id"], "pm_card_visa"))["status"] == "succeeded"
        finished = datetime.now(UTC)

        earlier = datetime.combine(started.date() - timedelta(days=3), datetime.min.time(), UTC) + timedelta(hours=12)
        await move_created_at(database, e["id"], earlier)
        await move_created_at(database, g["id"], OLD)
        yield Shop(
            account,
            client,
            today_keys={started.date().isoformat(), finished.date().isoformat()},
            earlier_day=earlier.date().isoformat(),
            range={"from": iso(started - timedelta(days=10)), "to": iso(finished + timedelta(days=1))},
        )


async def summary(client: httpx.AsyncClient, **params: str) -> dict:
    response = await client.get(SUMMARY, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def by_key(report: dict) -> dict[str, dict]:
    return {group["key"]: group for group in report["groups"]}


def no_refunds() -> dict:
    return {"count": 0, "succeeded": 0, "failed": 0, "amounts": []}


EUR_REFUNDS = {"count": 1, "succeeded": 1, "failed": 0,
               "amounts": [{"currency": "eur", "count": 1, "total": "12.50", "succeeded": "12.50"}]}
TOTALS = {
    "payments": {
        "count": 5,
        "attempted": 4,  # E was never confirmed
        "succeeded": 3,
        "success_rate": "0.7500",
        "amounts": [
            {"currency": "eur", "count": 2, "total": "37.00", "received": "30.00", "refunded": "12.50",
             "net": "17.50"},
            {"currency": "usd", "count": 3, "total": "35.00", "received": "30.00", "refunded": "0.00",
             "net": "30.00"},
        ],
    },
    "refunds": EUR_REFUNDS,
    "declines": [{"decline_code": "insufficient_funds", "count": 2}],
}


@pytest.mark.parametrize("group_by", ["day", "currency", "status", "payment_method_type"])
async def test_totals_are_per_currency_and_the_same_for_every_grouping(shop: Shop, group_by: str) -> None:
    report = await summary(shop.client, group_by=group_by, **shop.range)
    assert report["group_by"] == group_by
    assert report["from"] == shop.range["from"] and report["to"] == shop.range["to"]
    assert report["totals"] == TOTALS
    keys = [group["key"] for group in report["groups"]]
    assert keys == sorted(keys)


async def test_group_by_currency(shop: Shop) -> None:
    groups = by_key(await summary(shop.client, group_by="currency", **shop.range))
    assert set(groups) == {"eur", "usd"}
    assert groups["eur"]["payments"] == {
        "count": 2, "attempted": 1, "succeeded": 1, "success_rate": "1.0000",
        "amounts": [TOTALS["payments"]["amounts"][0]],
    }
    assert groups["eur"]["refunds"] == EUR_REFUNDS and groups["eur"]["declines"] == []
    assert groups["usd"]["payments"] == {
        "count": 3, "attempted": 3, "succeeded": 2, "success_rate": "0.6667",
        "amounts": [TOTALS["payments"]["amounts"][1]],
    }
    assert groups["usd"]["refunds"] == no_refunds()
    assert groups["usd"]["declines"] == [{"decline_code": "insufficient_funds", "count": 2}]


async def test_group_by_status(shop: Shop) -> None:
    groups = by_key(await summary(shop.client, group_by="status", **shop.range))
    assert set(groups) == {"succeeded", "requires_payment_method", "partially_refunded"}
    succeeded = groups["succeeded"]  # A, and B after its decline
    assert succeeded["payments"]["count"] == 2 and succeeded["payments"]["success_rate"] == "1.0000"
    assert succeeded["payments"]["amounts"] == [
        {"currency": "usd", "count": 2, "total": "30.00", "received": "30.00", "refunded": "0.00", "net": "30.00"}
    ]
    assert succeeded["declines"] == [{"decline_code": "insufficient_funds", "count": 1}]
    open_ = groups["requires_payment_method"]  # C declined, E never confirmed: two currencies, never added
    assert open_["payments"] == {
        "count": 2, "attempted": 1, "succeeded": 0, "success_rate": "0.0000",
        "amounts": [
            {"currency": "eur", "count": 1, "total": "7.00", "received": "0.00", "refunded": "0.00", "net": "0.00"},
            {"currency": "usd", "count": 1, "total": "5.00", "received": "0.00", "refunded": "0.00", "net": "0.00"},
        ],
    }
    assert open_["declines"] == [{"decline_code": "insufficient_funds", "count": 1}]
    refunded = groups["partially_refunded"]  # F
    assert refunded["payments"]["amounts"] == [TOTALS["payments"]["amounts"][0] | {"count": 1, "total": "30.00"}]
    assert refunded["refunds"] == EUR_REFUNDS


async def test_group_by_payment_method_type(shop: Shop) -> None:
    groups = by_key(await summary(shop.client, group_by="payment_method_type", **shop.range))
    # E was never charged: its type comes from payment_method_types.
    assert set(groups) == {"card", "sepa_debit"}
    assert groups["sepa_debit"]["payments"] == {
        "count": 1, "attempted": 0, "succeeded": 0, "success_rate": None,
        "amounts": [
            {"currency": "eur", "count": 1, "total": "7.00", "received": "0.00", "refunded": "0.00", "net": "0.00"}
        ],
    }
    card = groups["card"]
    assert (card["payments"]["count"], card["payments"]["succeeded"], card["payments"]["success_rate"]) == (
        4, 3, "0.7500")
    assert card["refunds"] == EUR_REFUNDS
    assert card["declines"] == TOTALS["declines"]


async def test_group_by_day_uses_utc_days(shop: Shop) -> None:
    groups = by_key(await summary(shop.client, group_by="day", **shop.range))
    assert shop.earlier_day in groups and set(groups) - {shop.earlier_day} <= shop.today_keys
    earlier = groups[shop.earlier_day]  # only E
    assert earlier["payments"]["count"] == 1
    assert earlier["payments"]["amounts"][0]["currency"] == "eur"
    assert earlier["payments"]["amounts"][0]["total"] == "7.00"
    today_count = sum(g["payments"]["count"] for k, g in groups.items() if k != shop.earlier_day)
    assert today_count == 4


async def test_range_is_half_open_on_created_at(shop: Shop) -> None:
    at_start = await summary(shop.client, group_by="day", **{"from": "2025-01-15T00:00:00Z", "to": "2025-01-16"})
    assert [g["key"] for g in at_start["groups"]] == ["2025-01-15"]
    assert at_start["totals"]["payments"]["amounts"] == [
        {"currency": "usd", "count": 1, "total": "9.00", "received": "9.00", "refunded": "0.00", "net": "9.00"}
    ]
    # The same instant as an end, written with an offset: excluded.
    before = await summary(shop.client, **{"from": "2025-01-14", "to": "2025-01-15T01:00:00+01:00"})
    assert before["to"] == "2025-01-15T00:00:00Z"
    assert before["groups"] == []
    assert before["totals"] == {
        "payments": {"count": 0, "attempted": 0, "succeeded": 0, "success_rate": None, "amounts": []},
        "refunds": no_refunds(),
        "declines": [],
    }


async def test_defaults_are_the_last_30_days_by_day(shop: Shop) -> None:
    before = datetime.now(UTC)
    report = await summary(shop.client)
    start, end = (datetime.fromisoformat(report[k]) for k in ("from", "to"))
    assert report["group_by"] == "day"
    assert end - start == timedelta(days=30)
    assert before - timedelta(seconds=5) <= end <= datetime.now(UTC) + timedelta(seconds=5)
    assert report["totals"] == TOTALS  # G (2025) is out of range, E (3 days ago) in


async def test_other_accounts_are_never_counted(
    shop: Shop, paymentd, database: Database  # type: ignore[no-untyped-def]
) -> None:
    _, other_key = await make_key(database, f"reports-other-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {other_key}"},
                                 timeout=30) as other:
        user = await other.post("/api/users", json={"email": "other@example.com", "name": "Other"})
        payment = await create(other, user.json()["id"], "11.00")
        await confirm(other, payment["id"], "pm_card_visa")
        theirs = await summary(other, group_by="currency", **shop.range)
    assert theirs["totals"]["payments"]["count"] == 1
    assert theirs["totals"]["payments"]["amounts"] == [
        {"currency": "usd", "count": 1, "total": "11.00", "received": "11.00", "refunded": "0.00", "net": "11.00"}
    ]
    assert theirs["totals"]["refunds"] == no_refunds() and theirs["totals"]["declines"] == []
    assert (await summary(shop.client, group_by="currency", **shop.range))["totals"] == TOTALS


async def test_reports_read_scope_alone_is_enough_and_is_required(
    shop: Shop, paymentd, database: Database  # type: ignore[no-untyped-def]
) -> None:
    _, reader = await make_key(database, shop.account, [Scope.reports_read])
    _, payments_only = await make_key(database, shop.account, [Scope.payments_read])
    async with httpx.AsyncClient(base_url=paymentd.url, timeout=30) as client:
        ok = await client.get(SUMMARY, params=shop.range, headers={"Authorization": f"Bearer {reader}"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["totals"] == TOTALS

        denied = await client.get(SUMMARY, params=shop.range, headers={"Authorization": f"Bearer {payments_only}"})
        assert denied.status_code == 403, denied.text
        assert denied.json()["error"]["type"] == "permission_error"
        assert denied.json()["error"]["code"] == "missing_scope"
        # Scope is checked before the parameters.
        bad = await client.get(
            SUMMARY, params={"group_by": "week"}, headers={"Authorization": f"Bearer {payments_only}"}
        )
        assert bad.status_code == 403

        anonymous = await client.get(SUMMARY)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"from": "yesterday"}, "from", "parameter_invalid"),
        ({"to": "2026-13-01"}, "to", "parameter_invalid"),
        ({"from": "2026-11-01T25:00:00Z", "to": "2026-11-02"}, "from", "parameter_invalid"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "from", "parameter_invalid"),
        ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "from", "parameter_invalid"),
        ({"from": "2025-01-01", "to": "2026-01-03"}, "from", "parameter_invalid"),  # 367 days
        ({"to": "0001-01-05"}, "to", "parameter_invalid"),  # the default `from` would be before year 1
        ({"group_by": "week"}, "group_by", "parameter_invalid"),
        ({"group_by": ""}, "group_by", "parameter_invalid"),
        ({"from": "2026-11-01" + "0" * 60}, "from", "parameter_invalid_string_too_long"),
    ],
)
async def test_bad_input_is_a_400_naming_the_parameter(shop: Shop, params: dict, param: str, code: str) -> None:
    response = await shop.client.get(SUMMARY, params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


async def test_a_range_of_366_days_is_allowed(shop: Shop) -> None:
    report = await summary(shop.client, **{"from": "2025-01-01", "to": "2026-01-02"}, group_by="currency")
    assert report["totals"]["payments"]["count"] == 1  # G


async def test_openapi_documents_the_report(shop: Shop) -> None:
    document = (await shop.client.get("/openapi.json")).json()
    operation = document["paths"][SUMMARY]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "group_by"}
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ReportOut"}
    report = document["components"]["schemas"]["ReportOut"]
    assert set(report["properties"]) == {"from", "to", "group_by", "groups", "totals"}
    assert "400" in operation["responses"] and "403" in operation["responses"]
