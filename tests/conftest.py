"""Fixtures for paymentd's integration tests: a real PostgreSQL database, the
Stripe simulator over HTTP, and paymentd itself served by uvicorn on loopback."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from paymentd import crypto
from paymentd.app import SANDBOX_KEY, build_provider, create_app
from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from paymentd.db import Database
from paymentd.jobs.deps import Deps
from tests.support.databases import admin_url, fresh_database
from tests.support.servers import ThreadedServer


# One key-encryption key for every Settings the tests build, in this process and in
# the processes they start (inherited), so all of them can open the same database's keys.
os.environ.setdefault("PAYMENTD_ENCRYPTION_KEYS", "tests:" + base64.b64encode(b"paymentd-tests-kek-32-bytes-long").decode())


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with admin_url(tmp_path_factory.mktemp("pg")) as admin, fresh_database(admin) as url:
        crypto.install(Settings(database_url=url), url)  # tests write and read sealed rows too
        yield url


@pytest.fixture(scope="session")
def sim() -> Iterator:
    import stripe_sim

    handle = stripe_sim.start_in_thread(host="127.0.0.1", port=0)
    yield handle
    handle.stop()


@pytest.fixture
def sim_config(sim) -> Iterator:  # type: ignore[no-untyped-def]
    """Set simulator knobs for one test; the defaults come back afterwards."""
    defaults = httpx.get(f"{sim.url}/_sim/config").json()

    def configure(**knobs) -> None:  # type: ignore[no-untyped-def]
        response = httpx.post(f"{sim.url}/_sim/config", json=knobs)
        assert response.status_code == 200, response.text

    yield configure
    knobs = ("latency_ms", "latency_p99_ms", "latency_by_operation", "fault_rates", "rate_limit_rps",
             "rate_limit_by_operation", "hang_s", "seed")
    httpx.post(f"{sim.url}/_sim/config", json={k: defaults[k] for k in knobs})
    httpx.delete(f"{sim.url}/_sim/faults")


def sim_requests(sim, **match) -> list[dict]:  # type: ignore[no-untyped-def]
    """The simulator's request log, filtered on equal fields (e.g. operation=...)."""
    log = httpx.get(f"{sim.url}/_sim/requests").json()["data"]
    return [r for r in log if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="session")
def settings(database_url: str, sim) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(
        database_url=database_url,
        stripe_api_base=sim.url,
        stripe_max_network_retries=2,
        log_level="WARNING",
        # No background sweeps racing other tests' assertions; tests of the worker
        # start their own server with one (`hooked` below).
        run_worker=False,
    )


@pytest.fixture(scope="session")
def paymentd(settings: Settings) -> Iterator[ThreadedServer]:
    server = ThreadedServer(create_app(settings)).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, pool_size=5)
    yield db
    await db.dispose()


@dataclass
class Merchant:
    """An account with a key holding every scope, and an HTTP client using it."""

    account_id: uuid.UUID
    key: str
    client: httpx.AsyncClient

    async def user(self) -> dict:
        response = await self.client.post("/api/users", json={"email": "ann@example.com", "name": "Ann"})
        assert response.status_code == 201, response.text
        return response.json()


async def make_key(database: Database, account: str, scopes: list[Scope]) -> tuple[uuid.UUID, str]:
    async with database.transaction() as session:
        row = await auth_service.get_or_create_account(session, account)
        _, secret = await auth_service.create_key(session, account, scopes)
        return row.id, secret


@pytest.fixture
async def merchant(paymentd: ThreadedServer, database: Database) -> AsyncIterator[Merchant]:
    account_id, key = await make_key(database, f"merchant-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(
        base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield Merchant(account_id, key, client)


@pytest.fixture
async def anonymous(paymentd: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=paymentd.url, timeout=30) as client:
        yield client


# A secret paymentd still accepts while Stripe already signs with the new one (rotation).
ROTATED_OUT_SECRET = "whsec_paymentd_tests_previous_secret"


@dataclass
class Hooked:
    """A simulator of its own whose webhook endpoint points at a paymentd of its own."""

    sim: Any
    server: ThreadedServer
    settings: Settings
    secret: str  # the endpoint's signing secret, returned by the simulator
    endpoint_id: str

    def sim_post(self, path: str, **json: Any) -> dict:
        response = httpx.post(f"{self.sim.url}{path}", json=json, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def hooked(database_url: str) -> Iterator[Hooked]:
    """For webhook and reconciler tests: their own simulator (knobs and deliveries stay
    out of other modules) and paymentd server (with webhook secrets and a job worker),
    on the session database."""
    import stripe_sim
    from paymentd.app import SANDBOX_KEY

    sim = stripe_sim.start_in_thread(host="127.0.0.1", port=0)
    auth = {"Authorization": f"Bearer {SANDBOX_KEY}"}
    created = httpx.post(f"{sim.url}/v1/webhook_endpoints", headers=auth, data={
        "url": "http://127.0.0.1:9/not-yet", "enabled_events[]": "*"}).json()
    settings = Settings(
        database_url=database_url,
        stripe_api_base=sim.url,
        stripe_webhook_secrets=[ROTATED_OUT_SECRET, created["secret"]],
        stripe_max_network_retries=0,
        # Sweeps are run by the tests themselves, not on a clock.
        reconcile_interval_s=3600,
        run_worker=True,
        log_level="WARNING",
    )
    server = ThreadedServer(create_app(settings)).start()
    httpx.post(f"{sim.url}/v1/webhook_endpoints/{created['id']}", headers=auth,
               data={"url": f"{server.url}/api/webhooks/stripe"}).raise_for_status()
    yield Hooked(sim, server, settings, created["secret"], created["id"])
    httpx.post(f"{sim.url}/v1/webhook_endpoints/{created['id']}", headers=auth, data={"disabled": "true"})
    server.stop()
    sim.stop()


@pytest.fixture
async def api(hooked: Hooked, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `hooked`'s paymentd, with an all-scopes key of a fresh account."""
    _, key = await make_key(database, f"hooked-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=hooked.server.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        yield client


@pytest.fixture
async def deps(hooked: Hooked, database: Database) -> AsyncIterator[Deps]:
    """What background jobs get, wired like `hooked`'s paymentd."""
    provider = build_provider(hooked.settings)
    yield Deps(database, provider, hooked.settings)
    await provider.aclose()


@pytest.fixture
def webhooks_off(hooked: Hooked) -> Iterator[None]:
    """The simulator stops delivering to `hooked` for one test (the reconciler must catch up)."""
    url = f"{hooked.sim.url}/v1/webhook_endpoints/{hooked.endpoint_id}"
    auth = {"Authorization": f"Bearer {SANDBOX_KEY}"}
    httpx.post(url, headers=auth, data={"disabled": "true"}).raise_for_status()
    yield
    httpx.post(url, headers=auth, data={"disabled": "false"}).raise_for_status()
