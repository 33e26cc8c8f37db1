"""The SSRF guard of outbound webhooks with private targets NOT allowed (production's
setting): refused at registration, and again at send time when DNS changed since
(the resolver is injected; nothing here resolves through the real DNS)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from paymentd.app import create_app
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from paymentd.db import Database
from paymentd.outbound.runtime import Runtime
from tests.conftest import make_key
from tests.support.receiver import Receiver
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.asyncio

PUBLIC = "93.184.215.14"


@dataclass
class FakeDNS:
    answers: dict[str, list[str]]

    async def __call__(self, host: str, port: int) -> list[str]:
        if host not in self.answers:
            raise OSError(f"no such host: {host}")
        return self.answers[host]


@dataclass
class Guarded:
    server: ThreadedServer
    dns: FakeDNS
    receiver: Receiver


@pytest.fixture(scope="module")
async def guarded(settings: Settings) -> AsyncIterator[Guarded]:
    receiver = await Receiver().start()
    dns = FakeDNS({})
    configured = settings.model_copy(update={
        "run_worker": True, "reconcile_interval_s": 3600, "webhooks_allow_private_targets": False,
        "webhooks_retry_base_s": 0.05, "webhooks_retry_cap_s": 0.2, "webhooks_sweep_interval_s": 1,
    })
    server = ThreadedServer(create_app(configured, outbound=Runtime(resolver=dns))).start()
    yield Guarded(server, dns, receiver)
    server.stop()
    await receiver.stop()


@pytest.fixture
async def admin(guarded: Guarded, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_key(database, f"guarded-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=guarded.server.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        yield client


@pytest.mark.parametrize(("answer", "why"), [
    (["127.0.0.1"], "loopback"),
    (["::1"], "loopback"),
    (["10.1.2.3"], "private"),
    (["192.168.0.7"], "private"),
    (["172.16.5.5"], "private"),
    (["169.254.169.254"], "metadata"),
    (["fd00:ec2::254"], "metadata"),
    (["169.254.10.10"], "link-local"),
    (["100.64.1.1"], "CGNAT"),
    (["224.0.0.1"], "multicast"),
    (["0.0.0.0"], "unspecified"),
    (["::ffff:127.0.0.1"], "loopback"),
    ([PUBLIC, "10.0.0.1"], "private"),  # every address is checked, not only the first
])
async def test_private_targets_are_refused_at_registration(guarded: Guarded, admin, answer, why):
    host = f"h{uuid.uuid4().hex[:8]}.example.com"
    guarded.dns.answers[host] = answer
    response = await admin.post("/api/webhook_endpoints", json={"url": f"https://{host}/hook", "events": ["*"]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "url_not_allowed"
    assert error["param"] == "url" and why in error["message"]


async def test_literal_addresses_and_plain_http_are_refused(guarded: Guarded, admin):
    for url, code in (("https://127.0.0.1/hook", "url_not_allowed"), ("https://[::1]:8443/hook", "url_not_allowed"),
                      ("https://169.254.169.254/latest/meta-data", "url_not_allowed"),
                      (f"http://{PUBLIC}/hook", "invalid_url"),  # http only where private targets are allowed
                      ("https://unknown.example.com/hook", "url_unresolvable")):
        response = await admin.post("/api/webhook_endpoints", json={"url": url, "events": ["*"]})
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"]["code"] == code, url


async def test_dns_changed_after_registration_is_refused_at_send_time(guarded: Guarded, admin):
    host = f"h{uuid.uuid4().hex[:8]}.example.com"
    guarded.dns.answers[host] = [PUBLIC]
    created = await admin.post("/api/webhook_endpoints", json={"url": f"https://{host}/hook", "events": ["*"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    # The name now points inside (DNS rebinding): the receiver on loopback must never be reached.
    guarded.dns.answers[host] = ["127.0.0.1"]
    user = (await admin.post("/api/users", json={"email": "cy@example.com", "name": "Cy"})).json()
    payment = await admin.post("/api/payments/create", headers={"Prefer": "wait=10"},
                               json={"user_id": user["id"], "amount": "3.00"})
    assert payment.status_code == 201

    deadline = time.monotonic() + 30
    while True:
        log = (await admin.get(f"/api/webhook_endpoints/{endpoint['id']}/deliveries")).json()["data"]
        if log and log[0]["attempts"] >= 2:
            break
        assert time.monotonic() < deadline, log
        await asyncio.sleep(0.1)
    assert log[0]["status"] == "pending" and log[0]["response_status"] is None
    assert "loopback" in log[0]["error"] and log[0]["error"].startswith("refused")
    assert guarded.receiver.received == []
