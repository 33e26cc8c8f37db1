"""Webhook endpoints and deliveries in the dashboard (headless Chromium): a paymentd with
its job worker sends to a real receiver; the pages show the endpoint and each delivery as
stored; pause, resume and send-again go through the same Endpoints service as the API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from paymentd.app import create_app
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from paymentd.db import Database
from tests.conftest import make_key
from tests.dashboard.conftest import csrf_of, signed_in, watching
from tests.support.receiver import Receiver
from tests.support.servers import ThreadedServer


@pytest.fixture(scope="module")
async def sending(settings: Settings) -> AsyncIterator[tuple[ThreadedServer, Receiver]]:
    receiver = await Receiver().start()
    configured = settings.model_copy(update={"run_worker": True, "reconcile_interval_s": 3600,
                                             "webhooks_allow_private_targets": True})
    server = ThreadedServer(create_app(configured)).start()
    yield server, receiver
    server.stop()
    await receiver.stop()


async def until(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_endpoints_and_deliveries(sending, browser, database: Database) -> None:  # type: ignore[no-untyped-def]
    server, receiver = sending
    account = f"dash-hooks-{uuid.uuid4().hex[:6]}"
    account_id, key = await make_key(database, account, list(Scope))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        created = await api.post("/api/webhook_endpoints", json={"url": f"{receiver.url}/dash-{account}",
                                                                 "events": ["*"], "description": "orders app"})
        assert created.status_code == 201, created.text
        endpoint = created.json()
        user = (await api.post("/api/users", json={"email": "hook@example.com", "name": "Hook"})).json()["id"]
        payment = (await api.post("/api/payments/create", json={"user_id": user, "amount": "11.00"})).json()
        confirmed = await api.post("/api/payments/confirm", headers={"Prefer": "wait=10"},
                                   json={"payment_id": payment["id"], "payment_method": "pm_card_visa"})
        assert confirmed.json()["status"] == "succeeded"

    async def delivered() -> list:
        async with database.sql_connection() as conn:
            rows = await conn.fetch("SELECT id, status, response_status FROM webhook_deliveries WHERE endpoint_id = $1",
                                    uuid.UUID(endpoint["id"]))
        return rows if rows and all(r["status"] == "succeeded" for r in rows) and len(rows) >= 2 else []

    rows = await until(delivered)
    assert rows, "the deliveries did not go out"
    async with watching(browser, server.url) as watched:
        page = watched.page
        await watched.sign_in(key)
        await page.goto(f"{server.url}/dashboard/webhooks")
        assert "orders app" in await page.inner_text("[data-testid=endpoints]")
        await watched.shot("webhooks")
        await page.click(f"tr[data-endpoint='{endpoint['id']}'] a")
        table = page.locator("[data-testid=deliveries] tbody tr")
        assert await table.count() == len(rows)
        text = await page.inner_text("[data-testid=deliveries]")
        assert "payment.succeeded" in text and "payment.created" in text and "200" in text
        await watched.shot("webhook-deliveries")

        await page.click("[data-testid=pause-form] button")
        await page.wait_for_selector("[data-testid=notice]")
        assert await page.inner_text("[data-testid=endpoint-status]") == "paused"
        await page.click("[data-testid=resume-form] button")
        await page.wait_for_selector("[data-testid=notice]")
        assert await page.inner_text("[data-testid=endpoint-status]") == "enabled"
        first = rows[0]["id"]
        await page.click(f"tr[data-delivery='{first}'] button")
        await page.wait_for_selector("[data-testid=notice]")

        await page.goto(f"{server.url}/dashboard/payments/{payment['id']}")
        timeline = await page.inner_text("[data-testid=timeline]")
        assert "payment.succeeded #" in timeline and "1 of 1 endpoints delivered" in timeline

    key_id = await _key_id(database, key)
    async with database.sql_connection() as conn:
        actions = await conn.fetch(
            "SELECT action, actor_type, actor_id FROM audit_entries WHERE account_id = $1 AND action = ANY($2)"
            " ORDER BY seq", str(account_id),
            ["webhook_endpoint.paused", "webhook_endpoint.resumed", "webhook_delivery.retried"])
    assert [a["action"] for a in actions] == ["webhook_endpoint.paused", "webhook_endpoint.resumed",
                                              "webhook_delivery.retried"]
    assert {(a["actor_type"], a["actor_id"]) for a in actions} == {("api_key", str(key_id))}


async def test_webhook_actions_need_admin(sending, database: Database) -> None:  # type: ignore[no-untyped-def]
    server, receiver = sending
    account = f"dash-hooks-{uuid.uuid4().hex[:6]}"
    _, admin = await make_key(database, account, [Scope.admin])
    _, viewer = await make_key(database, account, [Scope.dashboard, Scope.payments_write])
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as api:
        endpoint = (await api.post("/api/webhook_endpoints", json={"url": f"{receiver.url}/x", "events": ["*"]})).json()
    async with signed_in(server.url, viewer) as client:  # endpoints are admin's to see, as in the API
        for path in ("/dashboard/webhooks", f"/dashboard/webhooks/{endpoint['id']}"):
            page = await client.get(path)
            assert page.status_code == 403 and "admin" in page.text and receiver.url not in page.text
        csrf = csrf_of((await client.get("/dashboard")).text)
        refused = await client.post(f"/dashboard/webhooks/{endpoint['id']}/pause", data={"csrf": csrf})
        assert refused.status_code == 403 and "admin" in refused.text
    async with signed_in(server.url, admin) as client:
        page = await client.get(f"/dashboard/webhooks/{endpoint['id']}")
        assert page.status_code == 200 and "whsec_" not in page.text
        assert (await client.get(f"/dashboard/webhooks/{uuid.uuid4()}")).status_code == 404
        assert (await client.get("/dashboard/webhooks/nope")).status_code == 404
        assert (await client.get(f"/dashboard/webhooks/{endpoint['id']}", params={"cursor": "x"})).status_code == 400
    # Another account's endpoint does not exist here.
    _, stranger = await make_key(database, f"dash-hooks-{uuid.uuid4().hex[:6]}", [Scope.admin])
    async with signed_in(server.url, stranger) as client:
        assert (await client.get(f"/dashboard/webhooks/{endpoint['id']}")).status_code == 404
        csrf = csrf_of((await client.get("/dashboard")).text)
        assert (await client.post(f"/dashboard/webhooks/{endpoint['id']}/pause", data={"csrf": csrf})).status_code == 404
    async with database.sql_connection() as conn:
        assert await conn.fetchval("SELECT status FROM webhook_endpoints WHERE id = $1",
                                   uuid.UUID(endpoint["id"])) == "enabled"


async def test_delivery_log_pages(sending, browser, database: Database) -> None:  # type: ignore[no-untyped-def]
    """More deliveries than a page: each page holds what the database holds, newest first,
    and the pages together hold every delivery once."""
    from paymentd import outbound
    from paymentd.dashboard.webhooks import PAGE_SIZE

    server, receiver = sending
    account_id, key = await make_key(database, f"dash-hooks-{uuid.uuid4().hex[:6]}", list(Scope))
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        endpoint = (await api.post("/api/webhook_endpoints", json={"url": f"{receiver.url}/paged",
                                                                   "events": ["*"]})).json()
        # Paused: the deliveries are recorded and held, so none changes while the pages are read.
        assert (await api.post(f"/api/webhook_endpoints/{endpoint['id']}/pause")).status_code == 200
    for _ in range(PAGE_SIZE + 5):
        async with database.transaction() as session:
            outbound.emit(session, "payment.created", account_id=account_id, object_type="payment",
                          object_id=uuid.uuid4(), payload={"id": "x"})
    async with database.sql_connection() as conn:
        stored = [str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC",
            uuid.UUID(endpoint["id"]))]
    assert len(stored) == PAGE_SIZE + 5
    async with watching(browser, server.url) as watched:
        page = watched.page
        await watched.sign_in(key)
        await page.goto(f"{server.url}/dashboard/webhooks/{endpoint['id']}")
        assert await page.inner_text("[data-testid=endpoint-status]") == "paused"
        rows = page.locator("[data-testid=deliveries] tbody tr")
        first = [await rows.nth(i).get_attribute("data-delivery") for i in range(await rows.count())]
        await page.click("a[rel=next]")
        await page.wait_for_url("**cursor=**")
        second = [await rows.nth(i).get_attribute("data-delivery") for i in range(await rows.count())]
        assert await page.locator("a[rel=next]").count() == 0
        await watched.shot("webhook-deliveries-older")
    assert first == stored[:PAGE_SIZE] and second == stored[PAGE_SIZE:]


async def _key_id(database: Database, key: str) -> uuid.UUID:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT id FROM api_keys WHERE prefix = $1", key.split("_")[1])
