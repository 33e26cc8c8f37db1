"""The payments summary as CSV (`Accept: text/csv`), 406 for what it cannot serve, and a
confirmation Stripe refused as an invalid request (an unknown payment method) counted
neither as an attempt nor as a decline."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from paymentd.auth.keys import Scope
from paymentd.db import Database
from tests.conftest import make_key

SUMMARY = "/api/reports/summary"


@pytest.fixture(scope="module")
async def client(paymentd, database: Database) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """A: visa, succeeded. B: an unknown payment method (refused), then visa, succeeded.
    C: only the unknown payment method. D: declined. Two of three attempted payments charged."""
    _, key = await make_key(database, f"csv-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        user = (await client.post("/api/users", json={"email": "csv@example.com", "name": "Csv"})).json()

        async def pay(*methods: str) -> list[int]:
            created = await client.post("/api/payments/create", json={"user_id": user["id"], "amount": "10.00"})
            assert created.status_code == 201, created.text
            codes = []
            for method in methods:
                answer = await client.post("/api/payments/confirm", headers={"Prefer": "wait=10"},
                                           json={"payment_id": created.json()["id"], "payment_method": method})
                codes.append(answer.status_code)
                if answer.status_code == 400:
                    assert answer.json()["error"]["type"] == "invalid_request_error"
            return codes

        assert await pay("pm_card_visa") == [200]
        assert await pay("pm_does_not_exist", "pm_card_visa") == [400, 200]
        assert await pay("pm_does_not_exist") == [400]
        assert await pay("pm_card_chargeDeclined") == [402]
        yield client


async def test_an_invalid_payment_method_is_no_attempt_and_no_decline(client: httpx.AsyncClient) -> None:
    totals = (await client.get(SUMMARY)).json()["totals"]
    assert totals["payments"]["count"] == 4
    assert totals["payments"]["attempted"] == 3  # C asked no card
    assert totals["payments"]["succeeded"] == 2
    assert totals["payments"]["success_rate"] == "0.6667"
    assert totals["declines"] == [{"decline_code": "generic_decline", "count": 1}]


def facts(report: dict) -> set[tuple[str, str, str, str, str]]:
    """The JSON report as the CSV's rows, built independently of the CSV code."""
    rows = set()
    for key, summary in [*((g["key"], g) for g in report["groups"]), ("totals", report["totals"])]:
        p = summary["payments"]
        for name in ("count", "attempted", "succeeded", "success_rate"):
            rows.add((key, "payments", name, "", "" if p[name] is None else str(p[name])))
        for amounts in p["amounts"]:
            for name in ("count", "total", "received", "refunded", "net"):
                rows.add((key, "payments", name, amounts["currency"], str(amounts[name])))
        r = summary["refunds"]
        for name in ("count", "succeeded", "failed"):
            rows.add((key, "refunds", name, "", str(r[name])))
        for amounts in r["amounts"]:
            for name in ("count", "total", "succeeded"):
                rows.add((key, "refunds", name, amounts["currency"], str(amounts[name])))
        for decline in summary["declines"]:
            rows.add((key, "declines", decline["decline_code"], "", str(decline["count"])))
    return rows


@pytest.mark.parametrize("accept", ["text/csv", "text/*", "application/json;q=0.5, text/csv"])
async def test_csv_holds_the_same_figures_as_json(client: httpx.AsyncClient, accept: str) -> None:
    params = {"group_by": "currency"}
    as_json = (await client.get(SUMMARY, params=params)).json()
    response = await client.get(SUMMARY, params=params, headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="paymentd-summary-currency-')
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["key", "section", "name", "currency", "value"]
    assert len(rows[1:]) == len(set(map(tuple, rows[1:])))  # no fact twice
    assert set(map(tuple, rows[1:])) == facts(as_json)
    assert ["totals", "payments", "success_rate", "", "0.6667"] in rows


@pytest.mark.parametrize("accept", ["*/*", "application/json", "application/*", ""])
async def test_json_stays_the_default(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.get(SUMMARY, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "totals" in response.json()


@pytest.mark.parametrize("accept", ["application/xml", "text/html", "text/csv;q=0", "image/*"])
async def test_an_accept_it_cannot_serve_is_a_406_envelope(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.get(SUMMARY, headers={"Accept": accept})
    assert response.status_code == 406
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "not_acceptable"
    assert error["param"] == "Accept" and "text/csv" in error["message"]


async def test_bad_input_as_csv_is_still_the_error_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get(SUMMARY, params={"from": "yesterday"}, headers={"Accept": "text/csv"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "from"
