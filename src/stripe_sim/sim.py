"""The simulator's state and the services resource handlers share.

`Sim` bundles the store, knobs, idempotency cache, request log, timers for
delayed outcomes (bank debits settling, refunds failing) and event emission,
independent of HTTP so handlers stay plain synchronous functions: the event
loop runs one at a time, which makes every Stripe operation atomic.
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from collections.abc import Callable
from typing import Any

from . import persist
from .context import Ctx
from .idempotency import IdempotencyCache
from .knobs import Config, Faults, RateLimiter
from .resources import events, webhook_endpoints
from .store import Store
from .webhooks import Dispatcher


class Sim:
    """One simulated Stripe account: everything a request can read or change."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.store = Store(self.config.hot_objects)
        self.faults = Faults(self.config)
        self.limiter = RateLimiter(self.config)
        self.idempotency = IdempotencyCache(self.config.idempotency_ttl_s)
        self.requests: deque[dict[str, Any]] = deque(maxlen=self.config.request_log_limit)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timers: set[asyncio.TimerHandle] = set()
        self.base_url = ""  # where the simulator is reachable; used in next_action URLs
        self.webhooks = Dispatcher(self)
        self.changes = 0  # state changes so far: the saver writes the state file when it moved
        if self.config.state_file:
            persist.read(self, Path(self.config.state_file))
        self._register_cli_endpoint()

    def save(self) -> None:
        """Write the state file now (with the `state_file` knob)."""
        if self.config.state_file:
            persist.write(self, Path(self.config.state_file))

    def _register_cli_endpoint(self) -> None:
        if self.config.webhook_url:
            webhook_endpoints.register(self, self.config.webhook_url, self.config.webhook_secret)

    def reset(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        self.webhooks.reset()
        self.store.reset()
        self.idempotency.entries.clear()
        self.requests.clear()
        self.faults.queued.clear()
        self.limiter.buckets.clear()
        self.changes += 1
        self._register_cli_endpoint()

    def apply_config(self, changes: dict[str, Any]) -> None:
        self.config.update(changes)
        self.idempotency.ttl_s = self.config.idempotency_ttl_s
        if "request_log_limit" in changes:
            self.requests = deque(self.requests, maxlen=self.config.request_log_limit)
            self.webhooks.attempts = deque(self.webhooks.attempts, maxlen=self.config.request_log_limit)
        if "hot_objects" in changes:
            self.store.set_hot_limit(self.config.hot_objects)
        if "seed" in changes:
            self.faults.rng.seed(self.config.seed)

    def later(self, delay_ms: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` after `delay_ms` on the server's loop (cancelled by reset)."""
        assert self.loop is not None, "timers need the running server loop"

        def fire() -> None:
            self.timers.discard(handle)
            self.changes += 1
            fn(*args)

        handle = self.loop.call_later(max(delay_ms, 0) / 1000.0, fire)
        self.timers.add(handle)

    def emit(self, event_type: str, obj: dict[str, Any], ctx: Ctx,
             previous: dict[str, Any] | None = None) -> dict[str, Any]:
        event = events.create(self, event_type, obj, ctx, previous)
        self.webhooks.publish(event)
        return event

