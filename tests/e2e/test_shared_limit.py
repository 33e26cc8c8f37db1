"""Two paymentd processes sharing Redis, 1,000 payments offered at once, Stripe's
limit at 100 requests a second: "Stripe" never sees more than 100 in any one-second
window, and every payment settles, none twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import cluster, duplicates_at_stripe, max_per_second

PAYMENTS = 1000
RPS = 100


async def transaction(client: httpx.AsyncClient, user_id: str, i: int) -> str:
    """create + confirm, retrying transient answers with the same Idempotency-Key."""
    created = await _post(client, "/api/payments/create", {"user_id": user_id, "amount": "5.00"}, f"c{i}")
    payment_id = created.json()["id"]
    confirmed = await _post(client, "/api/payments/confirm",
                            {"payment_id": payment_id, "payment_method": "pm_card_visa"}, f"f{i}")
    assert confirmed.status_code in (200, 202), confirmed.text
    return payment_id


async def _post(client: httpx.AsyncClient, path: str, body: dict, key: str) -> httpx.Response:
    for _ in range(60):
        try:
            response = await client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:  # a kept-alive connection closed under us: same key again
            await asyncio.sleep(0.5)
            continue
        if response.status_code not in (409, 429, 502, 503, 504):
            assert response.status_code < 300, response.text
            return response
        await asyncio.sleep(0.5)
    raise AssertionError(response.text)


@pytest.mark.slow
async def test_two_processes_keep_stripe_under_its_limit(database_url: str, tmp_path: Path) -> None:
    # The simulator enforces Stripe's limit too: a request over it would be a 429.
    with cluster(database_url, servers=2, stripe_rps=RPS, sim_knobs={"rate_limit_rps": RPS}, log_dir=tmp_path) as c:
        clients = [
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {c.key}"}, timeout=60,
                              limits=httpx.Limits(max_connections=300))
            for url in c.urls
        ]
        try:
            user = (await clients[0].post("/api/users", json={"email": "l@x.co", "name": "L"})).json()
            started = time.monotonic()
            ids = await asyncio.gather(*[transaction(clients[i % 2], user["id"], i) for i in range(PAYMENTS)])
            assert len(set(ids)) == PAYMENTS
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                counts = await _statuses(clients[0], ids)
                if counts.get("succeeded", 0) == PAYMENTS:
                    break
                await asyncio.sleep(1)
            settled_s = time.monotonic() - started
        finally:
            for client in clients:
                await client.aclose()
        log = c.sim_log()

    assert counts.get("succeeded", 0) == PAYMENTS, counts
    api = [r for r in log if r["path"].startswith("/v1/")]
    assert max_per_second([r["timestamp"] for r in api]) <= RPS
    assert duplicates_at_stripe(log) == {"payments_with_two_intents": 0, "intents_confirmed_twice": 0}
    assert not any(r["status"] == 429 for r in api), "paymentd stayed under Stripe's limit"
    # At least two calls a payment at 100/s: it cannot settle faster than that.
    assert settled_s >= 2 * PAYMENTS / RPS * 0.9


async def _statuses(client: httpx.AsyncClient, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        page = (await client.get("/api/payments/history", params={"limit": 100, **({"cursor": cursor} if cursor else {})})).json()
        for p in page["data"]:
            counts[p["status"]] = counts.get(p["status"], 0) + 1
        if not page["has_more"]:
            return counts
        cursor = page["next_cursor"]
