"""Fixtures for paymentd's integration tests: a real PostgreSQL database, the
Stripe simulator over HTTP, and paymentd itself served by uvicorn on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from paymentd.app import create_app
from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from paymentd.db import Database
from tests.support.databases import admin_url, fresh_database
from tests.support.servers import ThreadedServer


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with admin_url(tmp_path_factory.mktemp("pg")) as admin, fresh_database(admin) as url:
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
    httpx.post(f"{sim.url}/_sim/config", json={k: defaults[k] for k in ("latency_ms", "latency_p99_ms",
               "latency_by_operation", "fault_rates", "rate_limit_rps", "rate_limit_by_operation")})
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
