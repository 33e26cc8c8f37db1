"""Starting the simulator from Python: in a thread (`start_in_thread`) or on the caller's loop (`start_async`)."""

from __future__ import annotations

import httpx

import stripe_sim
from tests.stripe_sim.helpers import make_client


async def test_start_async_serves_on_the_running_loop():
    handle = await stripe_sim.start_async(latency_ms=0)
    try:
        pi = await make_client(handle.url).v1.payment_intents.create_async(params={"amount": 1000, "currency": "eur"})
        assert pi.currency == "eur"
        assert handle.sim.store.payment_intents.get(pi.id)["amount"] == 1000
    finally:
        await handle.stop()


async def test_start_in_thread_takes_knobs_and_stops():
    handle = stripe_sim.start_in_thread(port=0, latency_ms=3, rate_limit_rps=50)
    try:
        async with httpx.AsyncClient() as http:
            config = (await http.get(handle.url + "/_sim/config")).json()
        assert config["latency_ms"] == 3 and config["rate_limit_rps"] == 50
        assert handle.url.startswith("http://127.0.0.1:")
    finally:
        handle.stop()
    async with httpx.AsyncClient() as http:
        try:
            await http.get(handle.url + "/_sim/health")
            raise AssertionError("still serving after stop()")
        except httpx.ConnectError:
            pass
