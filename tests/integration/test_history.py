"""GET /api/payments/history: newest first, filters, and cursor paging that stays
stable while other payments are inserted concurrently."""

from __future__ import annotations

import asyncio

from tests.conftest import Merchant


async def make_payments(merchant: Merchant, user_id: str, n: int, **fields) -> list[dict]:  # type: ignore[no-untyped-def]
    made = []
    for i in range(n):
        response = await merchant.client.post(
            "/api/payments/create", json={"user_id": user_id, "amount": f"{i + 1}.00", **fields}
        )
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


async def page_all(merchant: Merchant, query: str, limit: int) -> list[dict]:
    seen, cursor = [], None
    while True:
        url = f"/api/payments/history?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        body = (await merchant.client.get(url)).json()
        seen.extend(body["data"])
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return seen
        cursor = body["next_cursor"]


async def test_newest_first_with_filters(merchant: Merchant) -> None:
    ann = await merchant.user()
    bob = await merchant.user()
    anns = await make_payments(merchant, ann["id"], 3)
    bobs = await make_payments(merchant, bob["id"], 2)
    await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": bobs[0]["id"], "payment_method": "pm_card_visa"}
    )

    everything = (await merchant.client.get("/api/payments/history")).json()
    assert [p["id"] for p in everything["data"]] == [p["id"] for p in reversed(anns + bobs)]

    only_ann = (await merchant.client.get(f"/api/payments/history?user_id={ann['id']}")).json()["data"]
    assert {p["id"] for p in only_ann} == {p["id"] for p in anns}

    succeeded = (await merchant.client.get("/api/payments/history?status=succeeded")).json()["data"]
    assert [p["id"] for p in succeeded] == [bobs[0]["id"]]
    both = (
        await merchant.client.get("/api/payments/history?status=succeeded&status=requires_payment_method")
    ).json()["data"]
    assert len(both) == 5

    middle = anns[1]["created_at"]
    window = (
        await merchant.client.get(
            "/api/payments/history", params={"created_gte": middle, "created_lt": bobs[0]["created_at"]}
        )
    ).json()["data"]
    assert [p["id"] for p in window] == [anns[2]["id"], anns[1]["id"]]


async def test_paging_is_stable_under_concurrent_inserts(merchant: Merchant) -> None:
    user = await merchant.user()
    existing = await make_payments(merchant, user["id"], 25)

    async def insert_more() -> list[dict]:
        return await make_payments(merchant, user["id"], 10)

    inserting = asyncio.create_task(insert_more())
    seen = await page_all(merchant, f"user_id={user['id']}", limit=3)
    added = await inserting

    ids = [p["id"] for p in seen]
    assert len(ids) == len(set(ids)), "a page repeated a payment"
    assert {p["id"] for p in existing} <= set(ids), "a payment that existed before paging was skipped"
    assert set(ids) <= {p["id"] for p in existing + added}
    stamps = [(p["created_at"], p["id"]) for p in seen]
    assert stamps == sorted(stamps, reverse=True)
