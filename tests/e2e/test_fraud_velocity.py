"""Velocity counters are exact under concurrency: 50 confirms of one card at once,
spread over two `paymentd serve` processes. Each attempt is counted once, each decision
sees a different count (1..50), and the rule "more than 5 attempts from one card in
10 minutes -> review" holds exactly 45 of them for review."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from paymentd.db import Database
from paymentd.fraud import store
from tests.support.cluster import cluster

ATTEMPTS = 50


@pytest.mark.slow
async def test_fifty_concurrent_attempts_across_two_processes_are_counted_exactly(
        database_url: str, database: Database, tmp_path: Path) -> None:
    with cluster(database_url, servers=2, log_dir=tmp_path) as c:
        clients = [httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {c.key}"}, timeout=60)
                   for url in c.urls]
        try:
            rule = {"id": "card_velocity", "condition": "card_attempts_10m > 5", "action": "review"}
            saved = await clients[0].put("/api/fraud/rules", json={"rules": [rule]})
            assert saved.status_code == 200, saved.text
            user = (await clients[0].post("/api/users", json={"email": "v@x.co", "name": "V"})).json()["id"]
            created = [await clients[i % 2].post("/api/payments/create", json={"user_id": user, "amount": "3.00"},
                                                 headers={"Prefer": "wait=10"}) for i in range(ATTEMPTS)]
            ids = [r.json()["id"] for r in created]

            async def confirm(i: int, payment_id: str) -> int:
                response = await clients[i % 2].post(
                    "/api/payments/confirm", json={"payment_id": payment_id, "payment_method": "pm_card_visa"},
                    headers={"Prefer": "wait=30"})
                return response.status_code

            codes = await asyncio.gather(*[confirm(i, p) for i, p in enumerate(ids)])
            assert set(codes) <= {200, 202}, codes
            statuses = await _settled(clients[0], ids)
        finally:
            for client in clients:
                await client.aclose()

    assert sorted(statuses.values()).count("requires_capture") == ATTEMPTS - 5, statuses
    assert sorted(statuses.values()).count("succeeded") == 5, statuses
    seen_card, seen_user = [], []
    async with database.sql_connection() as conn:
        for payment_id in ids:
            [decision] = [d for d in await store.of_payment(conn, uuid.UUID(payment_id)) if d["stage"] == "confirm"]
            seen_card.append(int(decision["inputs"]["card_attempts_10m"]))
            seen_user.append(int(decision["inputs"]["user_attempts_10m"]))
            assert (decision["action"] == "review") == (seen_card[-1] > 5)
        account = await conn.fetchval("SELECT account_id FROM payments WHERE id = $1", uuid.UUID(ids[0]))
        totals = dict(await conn.fetch("SELECT kind, sum(attempts) FROM fraud_counters WHERE account_id = $1"
                                       " GROUP BY kind", account))
    # Every attempt counted once, and every decision saw its own, different count.
    assert sorted(seen_card) == list(range(1, ATTEMPTS + 1))
    assert sorted(seen_user) == list(range(1, ATTEMPTS + 1))
    assert totals == {"card": ATTEMPTS, "user": ATTEMPTS, "email": ATTEMPTS}


async def _settled(client: httpx.AsyncClient, ids: list[str]) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while True:
        statuses = {p: (await client.get(f"/api/payments/{p}")).json()["status"] for p in ids}
        if not {"processing", "requires_confirmation"} & set(statuses.values()) or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.5)
