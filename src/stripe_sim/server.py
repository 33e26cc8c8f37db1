"""The HTTP front: a raw ASGI app speaking Stripe's wire protocol, and uvicorn runners.

Raw ASGI (no framework) keeps the hot path short: read the body, check the
key, route, decode and check the form, apply idempotency and knobs, run the
handler, write orjson. `/_sim/*` goes to the control endpoints instead.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn

from . import control, expand, forms, params, routes
from .context import API_VERSION, Ctx
from .errors import (
    StripeError,
    api_error,
    invalid_api_key,
    invalid_request,
    lock_timeout,
    missing_api_key,
    rate_limited,
    unrecognized_url,
)
from .knobs import Config
from .sim import Sim

_JSON = (b"content-type", b"application/json")
logger = logging.getLogger("stripe_sim")


def _api_key(authorization: bytes | None) -> str:
    """The secret key from `Authorization` (Bearer, or Basic with the key as user), as Stripe reads it."""
    if not authorization:
        raise missing_api_key()
    scheme, _, value = authorization.decode("latin-1").partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            raise invalid_api_key(value) from None
    elif scheme.lower() != "bearer":
        raise invalid_api_key(value or scheme)
    if not value:
        raise missing_api_key()
    if not value.startswith(("sk_test_", "rk_test_")) or len(value) <= len("sk_test_"):
        raise invalid_api_key(value)
    return sys.intern(value)  # one copy, however many idempotency keys are saved under it


# Stored objects live until reset and never form reference cycles, yet Python's cyclic GC
# rescans all of them on every full collection: pauses grow with the store (p99 of ~300 ms at
# 30k PaymentIntents). Freezing moves everything alive so far out of the collector's sight.
_FREEZE_EVERY = 5_000


class SimApp:
    """ASGI application serving one `Sim`."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.served = 0
        self._saver: asyncio.Task[None] | None = None
        self._saved = sim.changes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.served += 1
        if self.served % _FREEZE_EVERY == 0:
            gc.freeze()
        path = scope["path"]
        if path.startswith("/_sim/"):
            await self._control(scope, path, body, send)
        else:
            await self._api(scope, path, body, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.sim.loop = asyncio.get_running_loop()
                if self.sim.config.state_file:
                    self._saver = asyncio.create_task(self._save_changes())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._saver is not None:
                    self._saver.cancel()
                    await asyncio.gather(self._saver, return_exceptions=True)
                    self._save()  # the last changes, before the state is dropped
                self.sim.reset()
                await self.sim.webhooks.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _save_changes(self) -> None:
        """Write the state file a moment after changes (persist.py), never mid-request:
        handlers run whole between awaits, so what is written is always consistent."""
        while True:
            await asyncio.sleep(self.sim.config.save_interval_s)
            if self.sim.changes != self._saved:
                self._save()

    def _save(self) -> None:
        changes = self.sim.changes
        try:
            self.sim.save()
            self._saved = changes
        except OSError:
            logger.exception("stripe_sim: could not write the state file")

    async def _control(self, scope: dict[str, Any], path: str, body: bytes, send: Any) -> None:
        try:
            status, payload, headers = control.handle(self.sim, scope["method"], path, scope["query_string"], body)
        except StripeError as exc:
            status, payload, headers = exc.status, exc.body(), exc.headers
        except orjson.JSONDecodeError:
            status, payload, headers = 400, invalid_request("control endpoints take a JSON body").body(), {}
        out = b"" if payload is None else orjson.dumps(payload)
        await _respond(send, status, out, [(k.encode(), v.encode()) for k, v in headers.items()])

    async def _api(self, scope: dict[str, Any], path: str, body: bytes, send: Any) -> None:
        sim = self.sim
        method = scope["method"]
        headers = dict(scope["headers"])
        idem_key_raw = headers.get(b"idempotency-key")
        idem_key = idem_key_raw.decode() if idem_key_raw else None
        api_version = headers.get(b"stripe-version", b"").decode() or API_VERSION
        request_id = sim.store.ids.new("req")
        raw_form = body if method == "POST" else scope["query_string"]
        entry: dict[str, Any] = {"id": request_id, "timestamp": time.time(), "method": method, "path": path,
                                 "operation": None, "idempotency_key": idem_key, "status": None, "params": None,
                                 "replayed": False, "fault": None}
        sim.requests.append(entry)
        if not sim.base_url:
            host = headers.get(b"host", b"127.0.0.1").decode()
            sim.base_url = f"http://{host}"
        extra: list[tuple[bytes, bytes]] = [(b"request-id", request_id.encode()),
                                            (b"stripe-version", api_version.encode())]
        idem_scope = None
        fault = None
        executed = False
        try:
            api_key, operation, args, checked = self._checked(method, path, headers, raw_form, entry)
            if idem_key and method == "POST":
                extra.append((b"idempotency-key", idem_key_raw))
                # Same parameters in any order are the same request; keep only a hash of them.
                # Stable across processes (not hash()): saved answers outlive a restart (persist.py).
                fingerprint = _fingerprint(method, path, body)
                saved = sim.idempotency.begin((api_key, idem_key), fingerprint)
                if saved is not None:
                    entry.update(status=saved.status, replayed=True)
                    await _respond(send, saved.status, saved.response(),
                                   [*extra, (b"idempotent-replayed", b"true"), *saved.headers])
                    return
                idem_scope = (api_key, idem_key)  # ours to finish, or to abandon if never executed
                extra.append((b"idempotent-replayed", b"false"))
            fault = sim.faults.pick(operation)
            if fault is not None:
                entry["fault"] = fault["kind"]
                if await self._fault_before(fault, send, entry):
                    if idem_scope:
                        sim.idempotency.abandon(idem_scope)
                    return
            if not sim.limiter.allow(operation):
                raise rate_limited()
            delay = sim.faults.latency_s(operation)
            if delay > 0:
                await asyncio.sleep(delay)
            ctx = Ctx(request_id, idem_key, api_version)
            executed = True
            if method != "GET":
                sim.changes += 1
            result = routes.HANDLERS[operation](sim, ctx, checked, *args)
            if checked.get("expand"):
                result = expand.apply(sim.store, result, checked["expand"])
            status, out, error_headers = 200, orjson.dumps(result), []
        except StripeError as exc:
            if idem_scope and not executed:
                # Refused before executing (fault, rate limit): Stripe does not save the key.
                sim.idempotency.abandon(idem_scope)
                idem_scope = None
            status, out = exc.status, orjson.dumps(exc.body())
            error_headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        except Exception:
            # A simulator bug: answer like Stripe's own 500 and free the key so a retry can run.
            logger.exception("stripe_sim failed on %s %s", method, path)
            if idem_scope:
                sim.idempotency.abandon(idem_scope)
                idem_scope = None
            status, out, error_headers = 500, orjson.dumps(api_error().body()), []
        if idem_scope:
            sim.idempotency.finish(idem_scope, status, out, tuple(error_headers))
        entry["status"] = status
        if fault is not None and fault["kind"] in ("drop_after", "timeout_after"):
            # Stripe did the work, but the client never hears back.
            await _hang_then_drop(send, sim.config.hang_s if fault["kind"] == "timeout_after" else 0.0)
            return
        await _respond(send, status, out, [*extra, *error_headers])

    @staticmethod
    def _checked(method: str, path: str, headers: dict[bytes, bytes], raw_form: bytes,
                 entry: dict[str, Any]) -> tuple[str, str, list[str], dict[str, Any]]:
        """Authenticate, route and check the parameters: (api key, operation, path ids, typed params)."""
        api_key = _api_key(headers.get(b"authorization"))
        found = routes.match(method, path)
        if found is None:
            raise unrecognized_url(method, path)
        operation, args = found
        entry["operation"] = operation
        try:
            raw = forms.decode(raw_form)
        except forms.FormError as exc:
            raise invalid_request(f"Invalid parameter name: {exc.param}", param=exc.param) from None
        entry["params"] = raw
        checked = params.check(operation, raw)
        entry["params"] = checked  # typed, arrays as lists: what tests want to compare
        return api_key, operation, args, checked

    async def _fault_before(self, fault: dict[str, Any], send: Any, entry: dict[str, Any]) -> bool:
        """Inject a fault that stops the request before Stripe acts; True when the response is handled."""
        kind = fault["kind"]
        if kind == "api_error":
            raise api_error(fault.get("status") or self.sim.config.error_status)
        if kind == "lock_timeout":
            raise lock_timeout()
        if kind == "rate_limit":
            raise rate_limited()
        if kind in ("drop", "timeout"):
            entry["status"] = 0
            await _hang_then_drop(send, self.sim.config.hang_s if kind == "timeout" else 0.0)
            return True
        return False


def _fingerprint(method: str, path: str, body: bytes) -> int:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{method} {path}\n".encode())
    digest.update(b"&".join(sorted(body.split(b"&"))))
    return int.from_bytes(digest.digest(), "big")


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _hang_then_drop(send: Any, hang_s: float) -> None:
    """Close the connection without an answer (after `hang_s`), like a network failure."""
    if hang_s:
        await asyncio.sleep(hang_s)
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)  # let uvicorn see the disconnect so it does not answer 500 itself
        return
    # Fallback for servers that hide the transport: start a response and never finish it.
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})


def _uvicorn_config(app: SimApp, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="on",
                          access_log=False, log_level=log_level, timeout_graceful_shutdown=1,
                          server_header=False, date_header=False, proxy_headers=False)


def make_config(options: dict[str, Any]) -> Config:
    config = Config()
    config.update(options)
    return config


@dataclass
class SimHandle:
    """A simulator running in a background thread; `url` is its base URL."""

    url: str
    sim: Sim
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


def start_in_thread(host: str = "127.0.0.1", port: int = 0, **options: Any) -> SimHandle:
    """Start a simulator on its own loop in a daemon thread; return once it accepts connections."""
    sim = Sim(make_config(options))
    server = uvicorn.Server(_uvicorn_config(SimApp(sim), host, port))
    thread = threading.Thread(target=server.run, name="stripe-sim", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"stripe_sim failed to start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    sim.base_url = f"http://{host}:{bound}"
    return SimHandle(sim.base_url, sim, server, thread)


@dataclass
class AsyncSimHandle:
    """A simulator running as a task on the caller's event loop."""

    url: str
    sim: Sim
    _server: uvicorn.Server
    _task: asyncio.Task[None]

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


async def start_async(host: str = "127.0.0.1", port: int = 0, **options: Any) -> AsyncSimHandle:
    """Start a simulator on the running loop (no thread); await `stop()` to end it."""
    sim = Sim(make_config(options))
    server = uvicorn.Server(_uvicorn_config(SimApp(sim), host, port))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"stripe_sim failed to start on {host}:{port}")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    sim.base_url = f"http://{host}:{bound}"
    return AsyncSimHandle(sim.base_url, sim, server, task)


def run(host: str, port: int, options: dict[str, Any], log_level: str = "info") -> None:
    """Serve in the foreground until interrupted (the command-line entry point)."""
    sim = Sim(make_config(options))
    sim.base_url = f"http://{host}:{port}" if port else ""
    uvicorn.Server(_uvicorn_config(SimApp(sim), host, port, log_level)).run()
