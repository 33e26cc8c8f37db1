"""Helpers shared by the stripe_sim tests (imported, unlike fixtures)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import stripe


def make_client(url: str, key: str = "sk_test_sim", retries: int = 0, timeout: float = 10.0) -> stripe.StripeClient:
    """The official SDK's async-capable client pointed at the simulator."""
    return stripe.StripeClient(key, base_addresses={"api": url}, http_client=stripe.HTTPXClient(timeout=timeout),
                               max_network_retries=retries)


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll an async check until it returns something truthy (for outcomes Stripe delivers later)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def event_types(client: stripe.StripeClient) -> list[str]:
    """Types of all events so far, oldest first."""
    page = await client.v1.events.list_async(params={"limit": 100})
    return [e.type for e in reversed(page.data)]
