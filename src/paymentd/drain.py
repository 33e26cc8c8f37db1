"""Graceful drain on SIGTERM, so a rolling restart behind a load balancer fails no request.

The first SIGTERM (or SIGINT) does not stop the server at once: `/readyz` answers 503
`draining` and every response says `Connection: close`, for `drain_delay_s`, long enough
for the front's health check to take this process out and for its pooled connections to
move elsewhere. Only then does uvicorn stop accepting, finish the requests in flight
within `shutdown_timeout_s`, and run the lifespan's shutdown, which drains the Stripe
calls that outlived their requests within what is left of the same bound. A second
signal stops at once. The state is per process: each `--workers` child drains itself.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.supervisors import multiprocess

_draining_since: float | None = None


def begin() -> None:
    """Mark this process as draining (idempotent)."""
    global _draining_since
    if _draining_since is None:
        _draining_since = time.monotonic()


def draining() -> bool:
    return _draining_since is not None


def begun_at() -> float | None:
    """When the drain began (time.monotonic()), or None."""
    return _draining_since


def reset() -> None:
    """For tests that drain an in-process app and go on using the process."""
    global _draining_since
    _draining_since = None


def remaining(started: float, bound_s: float) -> float:
    """What is left of `bound_s` counted from `started` (time.monotonic())."""
    return max(bound_s - (time.monotonic() - started), 0.0)


class DrainMiddleware:
    """While draining, every response closes its connection: a keep-alive client (the
    load balancer's pool) then opens its next connection elsewhere instead of racing
    the listener's close."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not draining():
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message["headers"] = [*headers, (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, closing)


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose first exit signal starts the drain and whose main loop
    ends `delay_s` later; a second signal (or a delay of 0) ends it at once."""

    def __init__(self, config: uvicorn.Config, *, delay_s: float) -> None:
        super().__init__(config)
        self.delay_s = delay_s
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._exit_at is None and self.delay_s > 0 and sig in (signal.SIGTERM, signal.SIGINT):
            self._captured_signals.append(sig)
            begin()
            self._exit_at = time.monotonic() + self.delay_s
            return
        begin()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


class DrainingProcess(multiprocess.Process):
    """A `--workers` child running DrainingServer (the supervisor forwards SIGTERM to it).
    It is rebuilt in a spawned interpreter, so it reads its delay from the settings there."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            from paymentd.config import get_settings

            self._server = DrainingServer(self.config, delay_s=get_settings().drain_delay_s)
        return self._server


@contextlib.contextmanager
def _children_drain() -> Iterator[None]:
    # uvicorn's supervisor builds its children from its module's `Process`, with no hook
    # for another server class; swapped only for as long as our supervisor runs.
    original = multiprocess.Process
    multiprocess.Process = DrainingProcess  # type: ignore[misc]
    try:
        yield
    finally:
        multiprocess.Process = original  # type: ignore[misc]


def run(config: uvicorn.Config, *, delay_s: float) -> None:
    """`uvicorn.run` for a factory app string, with the drain in every process
    (`--workers` children take `delay_s` from PAYMENTD_DRAIN_DELAY_S, as the caller did)."""
    if config.workers > 1:
        sock = config.bind_socket()
        with _children_drain():
            multiprocess.Multiprocess(config, sockets=[sock]).run()
        return
    server = DrainingServer(config, delay_s=delay_s)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE
