"""Admission: at most N requests at work in a process, and overload answered fast.

The requests of a process share one event loop and one database pool. Past a few
dozen at once they only slow each other down: a burst of 500 made every one of them
wait seconds, far past the response budget. So at most `limit` run at once; the
others wait their turn, first come first served, for at most `max_wait_s`, and past
that get 503 with Retry-After before anything was done (no Idempotency-Key claimed,
nothing written), so the caller retries with the same key when there is room.
Health checks and metrics are never held back. (Retry-After stays 1 s: an estimate
of the queue's drain time sent a burst's callers away for seconds and doubled the time
until all of it was served, in bench/seed_scenario.py.)
"""

from __future__ import annotations

import asyncio
from collections import deque

import prometheus_client
from starlette.types import ASGIApp, Receive, Scope, Send

from paymentd.errors import TemporarilyUnavailable
from paymentd.http import send_error

NEVER_HELD = frozenset({"/healthz", "/readyz", "/metrics"})

SHED = prometheus_client.Counter(
    "paymentd_requests_shed_total", "Requests answered 503 because the process was at capacity for too long"
)


class Admission:
    """A first-come-first-served gate of `limit` places with a bounded wait."""

    def __init__(self, limit: int, max_wait_s: float) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.max_wait_s = max_wait_s
        self.running = 0
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def enter(self) -> bool:
        """True with a place taken (give it back with `leave`); False when none came in time."""
        if self.running < self.limit and not self._queue:
            self.running += 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=self.max_wait_s)
        except asyncio.CancelledError:  # the client went away while waiting
            self._abandon(waiter)
            raise
        if waiter.done():
            return True  # `leave` handed its place over
        self._abandon(waiter)
        return False

    def leave(self) -> None:
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place passes straight to the next in line
                return
        self.running -= 1

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            self.leave()  # handed a place it will not use: pass it on
        else:
            self._queue.remove(waiter)
            waiter.cancel()


class AdmissionMiddleware:
    """Pure ASGI, inside the edge (request id, body guard) and outside the Idempotency-Key
    claim, so a refused request has done nothing at all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission: Admission | None = getattr(scope["app"].state, "admission", None)
        if scope["type"] != "http" or admission is None or scope["path"] in NEVER_HELD:
            await self.app(scope, receive, send)
            return
        if not await admission.enter():
            SHED.inc()
            error = TemporarilyUnavailable("paymentd is at capacity; retry shortly with the same request.",
                                           code="overloaded", retry_after=1)
            await send_error(send, error, scope["state"]["request_id"])
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave()
