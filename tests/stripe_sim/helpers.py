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


class Receiver:
    """A webhook endpoint on loopback that records deliveries and answers planned statuses.

    `statuses` are answered in order, then 200 for everything after; `delay_s` holds each answer.
    """

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        import http.server
        import threading
        import time

        self.statuses = list(statuses or [])
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append((dict(self.headers), body))
                time.sleep(delay_s)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def event_ids(self) -> list[str]:
        import json

        return [json.loads(body)["id"] for _, body in self.deliveries]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
