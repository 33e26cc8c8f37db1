"""Outbound webhooks end to end (issue 14): a paymentd with its job worker sends signed
events to a real receiver in the test; retries are made short by configuration."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from paymentd.app import create_app
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from paymentd.db import Database
from paymentd.jobs import cleanup
from paymentd.outbound.models import OutboundEvent
from paymentd.outbound.runtime import Runtime
from paymentd.outbound.targets import system_resolver
from paymentd.payments import repository, sync
from paymentd.payments.states import PaymentStatus
from tests.conftest import make_key
from tests.support.receiver import Receiver
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.asyncio


class MovableClock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class PinnedDNS:
    """Names the test gives an answer for; the system's DNS for the rest."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        if host in self.answers:
            return self.answers[host]
        return await system_resolver(host, port)


@dataclass
class Outbound:
    server: ThreadedServer
    clock: MovableClock
    receiver: Receiver
    dns: PinnedDNS


@pytest.fixture(scope="module")
async def outbound(settings: Settings) -> AsyncIterator[Outbound]:
    receiver = await Receiver().start()
    clock = MovableClock()
    configured = settings.model_copy(update={
        "run_worker": True, "reconcile_interval_s": 3600,
        "webhooks_allow_private_targets": True,
        "webhooks_retry_base_s": 0.05, "webhooks_retry_cap_s": 0.2, "webhooks_give_up_after_s": 600.0,
        "webhooks_pause_after_failures": 40, "webhooks_pause_after_s": 0.0,
        "webhooks_linger_s": 5.0, "webhooks_sweep_interval_s": 1,
    })
    dns = PinnedDNS()
    server = ThreadedServer(create_app(configured, outbound=Runtime(clock=clock, resolver=dns))).start()
    yield Outbound(server, clock, receiver, dns)
    server.stop()
    await receiver.stop()


@pytest.fixture
async def admin(outbound: Outbound, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_key(database, f"outbound-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=outbound.server.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        yield client


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check() if asyncio.iscoroutinefunction(check) else check()
        if result:
            return result
        assert time.monotonic() < deadline, f"condition not met within {timeout} s (last: {result!r})"
        await asyncio.sleep(0.1)


async def register(client: httpx.AsyncClient, url: str, events: list[str] | None = None) -> dict:
    response = await client.post("/api/webhook_endpoints", json={"url": url, "events": events or ["*"],
                                                                  "description": "orders service"})
    assert response.status_code == 201, response.text
    return response.json()


async def paid(client: httpx.AsyncClient, *, decline_first: bool = False, amount: str = "12.00") -> dict:
    user = (await client.post("/api/users", json={"email": "ann@example.com", "name": "Ann"})).json()
    created = await client.post("/api/payments/create", headers={"Prefer": "wait=10"},
                                json={"user_id": user["id"], "amount": amount})
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    if decline_first:
        declined = await client.post("/api/payments/confirm", headers={"Prefer": "wait=10"}, json={
            "payment_id": payment_id, "payment_method": "pm_card_chargeDeclined"})
        assert declined.status_code == 402, declined.text
    confirmed = await client.post("/api/payments/confirm", headers={"Prefer": "wait=10"},
                                  json={"payment_id": payment_id, "payment_method": "pm_card_visa"})
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    return confirmed.json()


def payload(received: Any) -> dict:
    return json.loads(received.body)


def for_object(received: list, object_id: str) -> list:
    return [r for r in received if payload(r)["data"]["object"]["id"] == object_id]


async def events_of(database: Database, object_id: str) -> list[OutboundEvent]:
    async with database.transaction() as session:
        rows = await session.scalars(select(OutboundEvent).where(OutboundEvent.object_id == object_id)
                                     .order_by(OutboundEvent.sequence))
        return list(rows.all())


async def test_failing_receiver_sees_every_sequence_in_order_and_signed(outbound: Outbound, admin, database):
    """The receiver fails the first three attempts of every delivery: each payment's
    events still arrive with sequence 1, 2, 3... (no gap, none out of order), and
    every request (failed ones too) verifies with standardwebhooks."""
    path = f"/ordered-{uuid.uuid4().hex[:6]}"
    outbound.receiver.fail_first[path] = 3
    endpoint = await register(admin, outbound.receiver.url + path)
    assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "enabled"
    payments = [await paid(admin), await paid(admin, decline_first=True), await paid(admin)]
    refund = await admin.post("/api/payments/refund", headers={"Prefer": "wait=10"},
                              json={"payment_id": payments[0]["id"], "amount": "2.00"})
    assert refund.status_code == 201, refund.text

    expected = {p["id"]: await events_of(database, p["id"]) for p in payments}
    expected[refund.json()["id"]] = await events_of(database, refund.json()["id"])

    def all_accepted() -> bool:
        accepted = outbound.receiver.at(path, accepted=True)
        return all(len(for_object(accepted, oid)) >= len(events) for oid, events in expected.items())

    await eventually(all_accepted, timeout=60)
    verifier = Webhook(endpoint["secret"])
    for object_id, events in expected.items():
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # numbered without gaps
        attempts = for_object(outbound.receiver.at(path), object_id)
        sequences = [payload(r)["sequence"] for r in attempts]
        assert sequences == sorted(sequences), f"out of order for {object_id}: {sequences}"
        accepted = [payload(r)["sequence"] for r in attempts if r.status == 200]
        assert accepted == list(range(1, len(events) + 1))
        assert len(attempts) == 4 * len(events)  # three refusals, then the success, each
        for received in attempts:
            verified = verifier.verify(received.body, received.headers)
            assert verified["id"] == received.headers["webhook-id"]
    types = [e.type for e in expected[payments[1]["id"]]]
    assert types[0] == "payment.created" and "payment.failed" in types and types[-1] == "payment.succeeded"
    failed = next(payload(r) for r in outbound.receiver.at(path, accepted=True)
                  if payload(r)["type"] == "payment.failed")
    assert failed["data"]["object"]["status"] == "requires_payment_method"
    assert failed["data"]["object"]["last_payment_error"]["decline_code"] == "generic_decline"
    assert [e.type for e in expected[refund.json()["id"]]][0] == "refund.created"
    assert "payment.partially_refunded" in [e.type for e in expected[payments[0]["id"]]]
    succeeded = next(payload(r) for r in for_object(outbound.receiver.at(path, accepted=True), payments[2]["id"])
                     if payload(r)["type"] == "payment.succeeded")
    # The object as GET shows it (the personal fields, stored sealed, sent in clear).
    got = (await admin.get(f"/api/payments/{payments[2]['id']}")).json()
    assert {k: got[k] for k in succeeded["data"]["object"]} == succeeded["data"]["object"]

    log = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries", params={"limit": 100})).json()
    assert log["data"] and all(d["status"] == "succeeded" and d["attempts"] == 4 for d in log["data"])
    assert all(d["response_status"] == 200 and d["latency_ms"] is not None for d in log["data"])
    async with database.sql_connection() as conn:
        stored = await conn.fetchval("SELECT payload::text FROM outbound_events WHERE object_id = $1 LIMIT 1",
                                     payments[0]["id"])
    assert "ann@example.com" not in stored and "12.00" not in stored  # sealed at rest


async def test_only_subscribed_types_are_delivered(outbound: Outbound, admin):
    path = f"/succeeded-only-{uuid.uuid4().hex[:6]}"
    await register(admin, outbound.receiver.url + path, ["payment.succeeded"])
    payment = await paid(admin)
    await eventually(lambda: outbound.receiver.at(path, accepted=True))
    await asyncio.sleep(1.0)
    assert [payload(r)["type"] for r in outbound.receiver.at(path)] == ["payment.succeeded"]
    assert payload(outbound.receiver.at(path)[0])["data"]["object"]["id"] == payment["id"]


async def test_rotation_signs_with_both_secrets_then_only_the_new(outbound: Outbound, admin):
    path = f"/rotating-{uuid.uuid4().hex[:6]}"
    endpoint = await register(admin, outbound.receiver.url + path, ["payment.created"])
    old = endpoint["secret"]
    rotated = await admin.post(f"/api/webhook_endpoints/{endpoint['id']}/rotate_secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    await create_payment(admin)
    first = (await eventually(lambda: outbound.receiver.at(path)))[0]
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(first.body, first.headers)
    Webhook(old).verify(first.body, first.headers)  # the receiver may switch at leisure

    # Rotated 25 hours ago (the injected clock): the old secret no longer signs.
    other = await register(admin, outbound.receiver.url + path + "-later", ["payment.created"])
    outbound.clock.offset = -timedelta(hours=25)
    try:
        newer = (await admin.post(f"/api/webhook_endpoints/{other['id']}/rotate_secret")).json()["secret"]
    finally:
        outbound.clock.offset = timedelta()
    await create_payment(admin)
    later = (await eventually(lambda: outbound.receiver.at(path + "-later")))[0]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    Webhook(newer).verify(later.body, later.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(later.body, later.headers)


async def create_payment(client: httpx.AsyncClient) -> dict:
    user = (await client.post("/api/users", json={"email": "bo@example.com", "name": "Bo"})).json()
    created = await client.post("/api/payments/create", headers={"Prefer": "wait=10"},
                                json={"user_id": user["id"], "amount": "5.00"})
    assert created.status_code == 201, created.text
    return created.json()


async def test_a_rolled_back_change_sends_nothing(outbound: Outbound, admin, database):
    path = f"/rollback-{uuid.uuid4().hex[:6]}"
    await register(admin, outbound.receiver.url + path)
    payment = await create_payment(admin)
    await eventually(lambda: outbound.receiver.at(path, accepted=True))  # payment.created, sequence 1

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with database.transaction() as session:
            row = await repository.get_by_id(session, uuid.UUID(payment["id"]), lock=True)
            sync.move(session, row, PaymentStatus.canceled, sync.RECONCILER)  # emits payment.canceled
            await session.flush()
            raise Boom  # after the event was written, in the same transaction
    await asyncio.sleep(1.5)
    assert [payload(r)["type"] for r in outbound.receiver.at(path)] == ["payment.created"]
    assert [e.type for e in await events_of(database, payment["id"])] == ["payment.created"]

    async with database.transaction() as session:  # committed this time: its number is the next one
        row = await repository.get_by_id(session, uuid.UUID(payment["id"]), lock=True)
        sync.move(session, row, PaymentStatus.canceled, sync.RECONCILER)
    second = await eventually(lambda: [r for r in outbound.receiver.at(path, accepted=True)
                                       if payload(r)["type"] == "payment.canceled"])
    assert payload(second[0])["sequence"] == 2


async def test_410_gone_disables_the_endpoint(outbound: Outbound, admin):
    path = f"/gone-{uuid.uuid4().hex[:6]}"
    outbound.receiver.status[path] = 410
    endpoint = await register(admin, outbound.receiver.url + path)
    await create_payment(admin)

    async def disabled() -> dict | None:
        body = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}")).json()
        return body if body["status"] == "disabled" else None

    body = await eventually(disabled)
    assert "410" in body["status_reason"]
    await create_payment(admin)
    await asyncio.sleep(1.5)
    assert len(outbound.receiver.at(path)) == 1  # nothing more is sent to it
    audit = (await admin.get("/api/audit", params={"object_id": endpoint["id"]})).json()["data"]
    assert {"webhook_endpoint.created", "webhook_endpoint.disabled"} <= {e["action"] for e in audit}
    assert next(e for e in audit if e["action"] == "webhook_endpoint.disabled")["actor"]["type"] == "system"


async def test_pause_holds_deliveries_until_resumed(outbound: Outbound, admin):
    path = f"/paused-{uuid.uuid4().hex[:6]}"
    endpoint = await register(admin, outbound.receiver.url + path)
    paused = await admin.post(f"/api/webhook_endpoints/{endpoint['id']}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
    payment = await create_payment(admin)
    await asyncio.sleep(2.0)
    assert outbound.receiver.at(path) == []
    log = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries")).json()["data"]
    assert [(d["status"], d["attempts"], d["object_id"]) for d in log] == [("pending", 0, payment["id"])]
    resumed = await admin.post(f"/api/webhook_endpoints/{endpoint['id']}/resume")
    assert resumed.json()["status"] == "enabled"
    await eventually(lambda: outbound.receiver.at(path, accepted=True))
    audit = (await admin.get("/api/audit", params={"object_id": endpoint["id"]})).json()["data"]
    assert {"webhook_endpoint.paused", "webhook_endpoint.resumed"} <= {e["action"] for e in audit}


async def test_repeated_failure_pauses_the_endpoint_and_says_why(outbound: Outbound, admin):
    path = f"/down-{uuid.uuid4().hex[:6]}"
    outbound.receiver.status[path] = 503
    endpoint = await register(admin, outbound.receiver.url + path)
    for _ in range(4):
        await create_payment(admin)

    async def paused() -> dict | None:
        body = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}")).json()
        return body if body["status"] == "paused" else None

    body = await eventually(paused, timeout=60)
    assert "in a row failed" in body["status_reason"]
    log = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries")).json()["data"]
    assert all(d["status"] == "pending" and d["response_status"] == 503 for d in log)
    assert all(len(d["response_body"]) <= 256 for d in log)  # answers recorded briefly


async def test_redeliver_sends_again(outbound: Outbound, admin):
    path = f"/again-{uuid.uuid4().hex[:6]}"
    endpoint = await register(admin, outbound.receiver.url + path, ["payment.created"])
    await create_payment(admin)
    first = (await eventually(lambda: outbound.receiver.at(path, accepted=True)))[0]
    log = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries")).json()["data"]
    retried = await admin.post(f"/api/webhook_endpoints/{endpoint['id']}/deliveries/{log[0]['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "pending", retried.text
    again = await eventually(lambda: outbound.receiver.at(path, accepted=True)[1:])
    assert again[0].headers["webhook-id"] == first.headers["webhook-id"] and again[0].body == first.body

    async def twice() -> bool:
        rows = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries")).json()["data"]
        return rows[0]["attempts"] == 2 and rows[0]["status"] == "succeeded"

    await eventually(twice)
    missing = await admin.post(f"/api/webhook_endpoints/{endpoint['id']}/deliveries/{uuid.uuid4()}/retry")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


async def test_endpoint_lifecycle_and_bad_input(outbound: Outbound, admin, database):
    endpoint = await register(admin, outbound.receiver.url + "/life")
    listed = (await admin.get("/api/webhook_endpoints")).json()["data"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    got = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}")).json()
    assert got["description"] == "orders service" and "secret" not in got

    async def refused(body: dict, code: str, status: int = 400) -> dict:
        response = await admin.post("/api/webhook_endpoints", json=body)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == code, error
        return error

    await refused({"url": "ftp://example.com/x", "events": ["*"]}, "invalid_url")
    await refused({"url": "https://user:pw@example.com/x", "events": ["*"]}, "invalid_url")
    await refused({"url": "not a url", "events": ["*"]}, "invalid_url")
    error = await refused({"url": "https://example.com/x", "events": ["payment.exploded"]}, "unknown_event_type")
    assert error["param"] == "events"
    await refused({"url": "https://example.com/x", "events": ["*", "payment.created"]}, "invalid_events")
    await refused({"url": "https://example.com/x", "events": []}, "parameter_invalid_empty")
    await refused({"url": "https://example.com/x", "events": ["*"], "secret": "mine"}, "parameter_unknown")

    # Another account's endpoint does not exist for this one.
    _, other_key = await make_key(database, f"other-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=outbound.server.url, headers={"Authorization": f"Bearer {other_key}"},
                                 timeout=30) as other:
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/rotate_secret"),
                               ("GET", "/deliveries")):
            response = await other.request(method, f"/api/webhook_endpoints/{endpoint['id']}{suffix}")
            assert response.status_code == 404, (method, suffix, response.text)
            assert response.json()["error"]["type"] == "invalid_request_error"
    _, reader = await make_key(database, f"reader-{uuid.uuid4().hex[:8]}", [Scope.payments_read])
    async with httpx.AsyncClient(base_url=outbound.server.url, headers={"Authorization": f"Bearer {reader}"},
                                 timeout=30) as weak:
        response = await weak.get("/api/webhook_endpoints")
        assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    bad_cursor = await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries", params={"cursor": "zzz"})
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["code"] == "invalid_cursor"

    rotated = await admin.post(f"/api/webhook_endpoints/{endpoint['id']}/rotate_secret")
    assert rotated.status_code == 200
    assert (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}")).json()["previous_secret_expires_at"]
    deleted = await admin.delete(f"/api/webhook_endpoints/{endpoint['id']}")
    assert deleted.status_code == 200
    assert (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}")).status_code == 404
    audit = (await admin.get("/api/audit", params={"object_id": endpoint["id"]})).json()["data"]
    actions = {e["action"] for e in audit}
    assert {"webhook_endpoint.created", "webhook_endpoint.secret_rotated", "webhook_endpoint.deleted"} <= actions
    assert not any("whsec_" in json.dumps(e) for e in audit)  # the secret never reaches the trail


async def test_sends_to_the_resolved_address_with_the_url_host_name(outbound: Outbound, admin):
    """The send connects to the address just resolved and checked (never a second
    lookup by the HTTP client), and says the URL's own host name."""
    port = outbound.receiver.url.rsplit(":", 1)[1]
    host = f"hooks-{uuid.uuid4().hex[:6]}.merchant.test"  # only the injected resolver knows it
    outbound.dns.answers[host] = ["127.0.0.1"]
    await register(admin, f"http://{host}:{port}/pinned", ["payment.created"])
    await create_payment(admin)
    received = (await eventually(lambda: outbound.receiver.at("/pinned", accepted=True)))[0]
    assert received.headers["Host"] == f"{host}:{port}"


async def test_redirects_are_not_followed(outbound: Outbound, admin):
    path = f"/moved-{uuid.uuid4().hex[:6]}"
    outbound.receiver.status[path] = 307  # to itself: a follower would loop, a client must not follow
    endpoint = await register(admin, outbound.receiver.url + path, ["payment.created"])
    await create_payment(admin)

    async def retried() -> list:
        rows = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries")).json()["data"]
        return rows if rows and rows[0]["attempts"] >= 2 else []

    rows = await eventually(retried)
    assert rows[0]["status"] == "pending" and rows[0]["response_status"] == 307
    # One request per attempt (one more may be in flight): a follower would have made 20.
    assert len(outbound.receiver.at(path)) <= rows[0]["attempts"] + 1


async def test_old_finished_webhooks_are_purged_pending_ones_kept(outbound: Outbound, admin, database):
    endpoint = await register(admin, outbound.receiver.url + f"/kept-{uuid.uuid4().hex[:6]}")
    await admin.post(f"/api/webhook_endpoints/{endpoint['id']}/pause")
    payment = await create_payment(admin)
    async with database.sql_transaction() as conn:
        await conn.execute("UPDATE outbound_events SET created_at = created_at - interval '40 days'"
                           " WHERE object_id = $1", payment["id"])
        await conn.execute("UPDATE webhook_deliveries SET created_at = created_at - interval '40 days'"
                           " WHERE endpoint_id = $1", uuid.UUID(endpoint["id"]))
    await cleanup.purge_outbound(database, 30)
    assert len(await events_of(database, payment["id"])) == 1  # its delivery still waits (paused)
    async with database.sql_transaction() as conn:
        await conn.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = $1",
                           uuid.UUID(endpoint["id"]))
    await cleanup.purge_outbound(database, 30)
    assert await events_of(database, payment["id"]) == []
    log = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries")).json()["data"]
    assert log == []
