"""Fixtures for the stripe_sim suite: one simulator per session, reset before every test.

Tests talk to it through the official SDK's async client over real HTTP, and
to its `/_sim` control endpoints with plain httpx.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import stripe

try:
    import stripe_sim
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    import stripe_sim

from stripe_sim.knobs import Config
from tests.stripe_sim.helpers import make_client

DEFAULTS = Config().as_dict()


@pytest.fixture(scope="session")
def sim() -> Iterator[stripe_sim.SimHandle]:
    handle = stripe_sim.start_in_thread(host="127.0.0.1", port=0)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def client(sim: stripe_sim.SimHandle) -> stripe.StripeClient:
    return make_client(sim.url)


@pytest.fixture(scope="session")
async def control(sim: stripe_sim.SimHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url + "/_sim", timeout=10) as http:
        yield http


@pytest.fixture(autouse=True)
async def fresh(control: httpx.AsyncClient) -> AsyncIterator[None]:
    """Every test starts with an empty simulator and default knobs (short delays for speed)."""
    await control.post("/config", json={**DEFAULTS, "settle_delay_ms": 100.0, "refund_fail_delay_ms": 100.0,
                                        "dispute_delay_ms": 100.0, "early_fraud_warning_delay_ms": 100.0,
                                        "webhook_retry_base_ms": 50.0})
    await control.post("/reset")
    yield
