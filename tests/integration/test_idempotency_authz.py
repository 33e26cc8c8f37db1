"""Idempotency-Key replays answer only callers allowed to get the answer, and answers
about the caller (401, 403, 429) are never stored."""

from __future__ import annotations

import uuid

import httpx

from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.db import Database
from tests.conftest import Merchant


async def refundable(merchant: Merchant) -> dict:
    user = await merchant.user()
    payment = (await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "9"})).json()
    confirmed = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"},
        headers={"Prefer": "wait=10"})
    assert confirmed.json()["status"] == "succeeded", confirmed.text
    return payment


async def second_key(database: Database, merchant: Merchant, scopes: list[Scope]) -> str:
    async with database.transaction() as session:
        account = await session.get(auth_service.Account, merchant.account_id)
        _, key = await auth_service.create_key(session, account.name, scopes)
        return key


async def test_a_stored_refund_is_not_replayed_to_a_key_without_refunds_write(  # type: ignore[no-untyped-def]
    merchant: Merchant, paymentd, database: Database
) -> None:
    payment = await refundable(merchant)
    key = {"Idempotency-Key": f"refund-{uuid.uuid4()}"}
    body = {"payment_id": payment["id"], "amount": "2"}
    first = await merchant.client.post("/api/payments/refund", json=body, headers=key)
    assert first.status_code == 201, first.text

    reader = await second_key(database, merchant, [Scope.payments_read, Scope.payments_write])
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {reader}"}) as other:
        refused = await other.post("/api/payments/refund", json=body, headers=key)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["type"] == "permission_error"
    assert "refunds:write" in refused.json()["error"]["message"]
    assert first.json()["id"] not in refused.text and refused.headers.get("idempotent-replayed") is None
    # The stored answer itself is untouched: its rightful caller still gets it back.
    again = await merchant.client.post("/api/payments/refund", json=body, headers=key)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_403_is_not_stored_and_the_key_then_works_for_a_key_with_the_scope(  # type: ignore[no-untyped-def]
    merchant: Merchant, paymentd, database: Database
) -> None:
    payment = await refundable(merchant)
    key = {"Idempotency-Key": f"refund-{uuid.uuid4()}"}
    body = {"payment_id": payment["id"], "amount": "3"}
    reader = await second_key(database, merchant, [Scope.payments_read])
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {reader}"}) as other:
        refused = await other.post("/api/payments/refund", json=body, headers=key)
        assert refused.status_code == 403
        assert (await other.post("/api/payments/refund", json=body, headers=key)).status_code == 403  # not 409/replay
    done = await merchant.client.post("/api/payments/refund", json=body, headers=key)
    assert done.status_code == 201, done.text
    assert done.headers.get("idempotent-replayed") is None and done.json()["amount"] == "3.00"
    # The refused attempt left no claim: the key is now bound to this request only.
    assert (await merchant.client.post("/api/payments/refund", json=body, headers=key)).headers[
        "idempotent-replayed"] == "true"


async def test_a_401_never_claims_a_key(merchant: Merchant, paymentd) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    body = {"user_id": user["id"], "amount": "4"}
    async with httpx.AsyncClient(base_url=paymentd.url) as anonymous:
        for auth in ({}, {"Authorization": f"Bearer pd_{'a' * 12}_{'A' * 43}"}):
            response = await anonymous.post("/api/payments/create", json=body, headers={**key, **auth})
            assert response.status_code == 401
    created = await merchant.client.post("/api/payments/create", json=body, headers=key)
    assert created.status_code == 201 and created.headers.get("idempotent-replayed") is None
