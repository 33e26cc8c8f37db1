"""401 / 403 / 404 between accounts and scopes, always in the contract's envelope."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.db import Database
from tests.conftest import Merchant, make_key


def assert_error(response: httpx.Response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer pd_aaaaaaaaaaaa_" + "A" * 43],
)
async def test_missing_malformed_or_unknown_key_is_401(anonymous: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = await anonymous.get(f"/api/payments/{uuid.uuid4()}", headers=headers)
    assert_error(response, 401, "authentication_error")


async def test_revoked_key_is_401_within_the_auth_cache_ttl(
    merchant: Merchant, database: Database, settings
) -> None:  # type: ignore[no-untyped-def]
    assert (await merchant.client.post("/api/users", json={"email": "a@b.co", "name": "A"})).status_code == 201
    async with database.transaction() as session:
        assert await auth_service.revoke_key(session, merchant.key.split("_")[1])
    await asyncio.sleep(settings.auth_cache_s)  # each process trusts a checked key this long
    response = await merchant.client.post("/api/users", json={"email": "a@b.co", "name": "A"})
    assert_error(response, 401, "authentication_error")


async def test_key_without_scope_is_403(paymentd, database: Database) -> None:  # type: ignore[no-untyped-def]
    _, key = await make_key(database, f"readonly-{uuid.uuid4().hex[:6]}", [Scope.payments_read])
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"}) as client:
        error = assert_error(
            await client.post("/api/users", json={"email": "a@b.co", "name": "A"}), 403, "permission_error"
        )
        assert "payments:write" in error["message"]
        assert (await client.get(f"/api/users/{uuid.uuid4()}")).status_code == 404


async def test_another_accounts_objects_are_404(merchant: Merchant, paymentd, database: Database) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    created = await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "5.00"})
    payment = created.json()
    _, other_key = await make_key(database, f"other-{uuid.uuid4().hex[:6]}", list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {other_key}"}) as other:
        for response in [
            await other.get(f"/api/users/{user['id']}"),
            await other.get(f"/api/payments/{payment['id']}"),
            await other.post("/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"}),
            await other.post("/api/payments/create", json={"user_id": user["id"], "amount": "5.00"}),
        ]:
            assert_error(response, 404, "invalid_request_error")
        history = await other.get("/api/payments/history")
        assert history.json()["data"] == []
    # The owner still sees it, untouched.
    mine = await merchant.client.get(f"/api/payments/{payment['id']}")
    assert mine.json()["status"] == "requires_payment_method"


async def test_request_id_is_echoed_or_made(anonymous: httpx.AsyncClient) -> None:
    echoed = await anonymous.get("/healthz", headers={"X-Request-Id": "my-trace-123"})
    assert echoed.headers["x-request-id"] == "my-trace-123"
    made = await anonymous.get("/healthz")
    assert made.headers["x-request-id"].startswith("req_")
    odd = await anonymous.get("/healthz", headers={"X-Request-Id": "has spaces and <tags>"})
    assert odd.headers["x-request-id"].startswith("req_")


async def test_unknown_route_and_method_use_the_envelope(anonymous: httpx.AsyncClient) -> None:
    assert_error(await anonymous.get("/api/nothing-here"), 404, "invalid_request_error")
    assert_error(await anonymous.delete("/healthz"), 405, "invalid_request_error")
