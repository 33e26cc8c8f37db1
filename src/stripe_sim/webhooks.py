"""Signed webhook delivery with Stripe's retry behaviour, plus delay/duplicate/reorder knobs.

Each event goes to every enabled endpoint subscribed to it, signed like
Stripe (`Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "t.payload">`),
and is retried with exponential backoff until the endpoint answers 2xx.
Real Stripe delivers late, twice, and out of order; the knobs make the
simulator do the same on purpose so receivers are tested against it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from .resources import events, webhook_endpoints

if TYPE_CHECKING:
    from .sim import Sim


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def _client_tls(trust_file: str | None) -> ssl.SSLContext | bool:
    """The system's trust store, or exactly the certificates in `trust_file` (the
    endpoint's own, self-issued chain in a sandbox): partial-chain trust lets a leaf
    certificate anchor itself, hostname checks stay on."""
    if not trust_file:
        return True
    context = ssl.create_default_context(cafile=trust_file)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


class Dispatcher:
    """Delivers each event to the endpoints listening to it, in background tasks on the server loop."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.rng = random.Random(sim.config.seed)
        self.tasks: set[asyncio.Task[None]] = set()
        self.held: list[tuple[dict[str, Any], bytes]] = []  # events waiting for a reorder window
        # Delivery log, readable at /_sim/webhooks; bounded like the request log.
        self.attempts: deque[dict[str, Any]] = deque(maxlen=sim.config.request_log_limit)
        # aiohttp: about a fifth of httpx's CPU per request; in benchmarks the simulator
        # shares the machine's cores with the paymentd it delivers to.
        self.client: aiohttp.ClientSession | None = None

    def count_for(self, event_type: str) -> int:
        return len(webhook_endpoints.listening(self.sim, event_type))

    def publish(self, event: dict[str, Any]) -> None:
        """Queue an event for every endpoint that listens to it (no-op without endpoints)."""
        if not event["pending_webhooks"] or self.sim.loop is None:
            return
        payload = orjson.dumps(events.view(event))
        window = self.sim.config.webhook_reorder_window_ms
        if window > 0:
            if not self.held:
                self.sim.later(window, self._flush_reversed)
            self.held.append((event, payload))
            return
        self._send(event, payload)

    def _flush_reversed(self) -> None:
        held, self.held = self.held, []
        self._spawn(self._deliver_in_order(list(reversed(held))))

    async def _deliver_in_order(self, batch: list[tuple[dict[str, Any], bytes]]) -> None:
        # One after another, so the receiver sees exactly this (newest first) order.
        for event, payload in batch:
            for endpoint in webhook_endpoints.listening(self.sim, event["type"]):
                await self._deliver(event, endpoint, payload)

    def _send(self, event: dict[str, Any], payload: bytes) -> None:
        config = self.sim.config
        copies = 2 if config.webhook_duplicate_rate and self.rng.random() < config.webhook_duplicate_rate else 1
        for endpoint in webhook_endpoints.listening(self.sim, event["type"]):
            for _ in range(copies):
                self._spawn(self._deliver(event, endpoint, payload))

    def _spawn(self, coro: Any) -> None:
        assert self.sim.loop is not None
        task = self.sim.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, event: dict[str, Any], endpoint: dict[str, Any], payload: bytes) -> None:
        config = self.sim.config
        if config.webhook_delay_ms:
            await asyncio.sleep(config.webhook_delay_ms / 1000.0)
        if self.client is None:
            self.client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_client_tls(config.webhook_trust_file)))
        for attempt in range(1, max(config.webhook_max_attempts, 1) + 1):
            secret = self.sim.store.webhook_secrets.get(endpoint["id"])
            if secret is None:
                return  # endpoint deleted meanwhile
            record = {"event": event["id"], "type": event["type"], "endpoint": endpoint["id"],
                      "url": endpoint["url"], "attempt": attempt, "timestamp": time.time(), "status": None,
                      "error": None}
            try:
                async with self.client.post(endpoint["url"], data=payload,
                                            timeout=aiohttp.ClientTimeout(total=config.webhook_timeout_s), headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    "Stripe-Signature": signature_header(payload, secret),
                }) as response:
                    record["status"] = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            self.attempts.append(record)
            if record["status"] is not None and 200 <= record["status"] < 300:
                event["pending_webhooks"] = max(event["pending_webhooks"] - 1, 0)
                return
            if attempt < config.webhook_max_attempts:
                await asyncio.sleep(config.webhook_retry_base_ms / 1000.0 * 2 ** (attempt - 1))

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.held.clear()
        self.attempts.clear()

    async def close(self) -> None:
        self.reset()
        if self.client is not None:
            await self.client.close()
            self.client = None
