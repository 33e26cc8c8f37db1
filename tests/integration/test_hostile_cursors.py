"""Hostile paging and date parameters: every malformed or extreme cursor, history bound
and report bound is a 400 `invalid_request_error` in the envelope, never a 500."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import Merchant

pytestmark = pytest.mark.asyncio


def cursor_of(raw: object) -> str:
    """A cursor built the way the API builds its own (base64url of JSON, no padding)."""
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


ID = "00000000-0000-4000-8000-000000000000"

HOSTILE_CURSORS = {
    "extreme timestamp, far future with offset": cursor_of({"t": "9999-12-31T23:59:59.999999-14:00", "id": ID}),
    "extreme timestamp, year 1 with offset": cursor_of({"t": "0001-01-01T00:00:00+14:00", "id": ID}),
    "year 1 in UTC": cursor_of({"t": "0001-01-01T00:00:00+00:00", "id": ID}),
    "year 9999 in UTC": cursor_of({"t": "9999-12-31T23:59:59+00:00", "id": ID}),
    "naive timestamp": cursor_of({"t": "2026-01-01T00:00:00", "id": ID}),
    "timestamp as a number": cursor_of({"t": 1_700_000_000, "id": ID}),
    "huge number": cursor_of({"t": 10**300, "id": ID}),
    "huge float": b64(b'{"t": 1e999, "id": "x"}'),
    "id as a number": cursor_of({"t": "2026-01-01T00:00:00+00:00", "id": 12345}),
    "id as a list": cursor_of({"t": "2026-01-01T00:00:00+00:00", "id": [ID]}),
    "id not a uuid": cursor_of({"t": "2026-01-01T00:00:00+00:00", "id": "nope"}),
    "missing id": cursor_of({"t": "2026-01-01T00:00:00+00:00"}),
    "a list": cursor_of(["2026-01-01T00:00:00+00:00", ID]),
    "a string": cursor_of("hello"),
    "null": cursor_of(None),
    "bad base64": "%%%***",
    "base64 of bytes that are not UTF-8": b64(b"\xff\xfe\xfd"),
    "base64 of not JSON": b64(b"not json at all"),
    "deep nesting": b64(b"[" * 370),
    "one char": "a",
    "nul bytes": b64(b'{"t": "2026-01-01T00:00:00\\u0000", "id": "' + ID.encode() + b'"}'),
}


@pytest.mark.parametrize("cursor", list(HOSTILE_CURSORS.values()), ids=list(HOSTILE_CURSORS))
async def test_a_hostile_history_cursor_is_a_400(merchant: Merchant, cursor: str) -> None:
    response = await merchant.client.get("/api/payments/history", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "parameter_invalid", "cursor")


HOSTILE_BOUNDS = [
    ("created_gte", "0001-01-01T00:00:00+14:00"),
    ("created_gte", "0001-01-01T00:00:00"),
    ("created_lt", "9999-12-31T23:59:59.999999-14:00"),
    ("created_lt", "9999-12-31T23:59:59"),
    ("created_gte", "99999-01-01T00:00:00Z"),
    ("created_gte", "1" * 30),
    ("created_gte", "0001-12-31T23:59:59Z"),
]


@pytest.mark.parametrize(("param", "value"), HOSTILE_BOUNDS)
async def test_a_hostile_history_bound_is_a_400(merchant: Merchant, param: str, value: str) -> None:
    response = await merchant.client.get("/api/payments/history", params={param: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


HOSTILE_REPORT_RANGES = [
    {"from": "9999-12-31", "to": "9999-12-31T23:59:59"},
    {"from": "9999-12-31T00:00:00-14:00"},
    {"from": "9999-12-30", "to": "9999-12-31T23:59:59.999999+00:00"},
    {"from": "0001-01-01", "to": "0001-01-02"},
    {"from": "0001-01-01T00:00:00+14:00", "to": "0001-01-02"},
    {"to": "0001-01-01T00:00:00+00:00"},
    {"from": "2026-01-01", "to": "9999-12-31T23:59:59-14:00"},
    {"from": "1" * 20},
    {"to": "9999-06-01"},
]


@pytest.mark.parametrize("params", HOSTILE_REPORT_RANGES)
async def test_a_hostile_report_range_is_a_400(merchant: Merchant, params: dict) -> None:
    for group_by in ("day", "currency"):
        response = await merchant.client.get("/api/reports/summary", params={**params, "group_by": group_by})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] in ("from", "to"), error


async def test_extreme_but_legal_ranges_answer(merchant: Merchant) -> None:
    """The edges of the accepted range (years 2 to 9998 in UTC) still answer, empty."""
    for params in ({"from": "9998-12-30", "to": "9998-12-31T23:59:59.999999Z"},
                   {"from": "0002-01-01", "to": "0002-01-02"}):
        response = await merchant.client.get("/api/reports/summary", params={**params, "group_by": "day"})
        assert response.status_code == 200, response.text
        assert response.json()["groups"] == []
    history = await merchant.client.get("/api/payments/history",
                                        params={"created_gte": "0002-01-02T00:00:00+14:00"})
    assert history.status_code == 200, history.text


async def test_a_cursor_the_api_returned_still_pages(merchant: Merchant) -> None:
    user = await merchant.user()
    for amount in ("1.00", "2.00", "3.00"):
        created = await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": amount})
        assert created.status_code == 201, created.text
    first = (await merchant.client.get("/api/payments/history", params={"limit": 2})).json()
    assert first["has_more"] and first["next_cursor"]
    second = await merchant.client.get("/api/payments/history", params={"limit": 2, "cursor": first["next_cursor"]})
    assert second.status_code == 200, second.text
    assert [p["amount"] for p in second.json()["data"]] == ["1.00"]
