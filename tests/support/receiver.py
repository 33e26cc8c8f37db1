"""A merchant's webhook receiver for the outbound webhook tests: a real HTTP server
(aiohttp, on loopback, in the test's event loop) that records every request as sent
(raw body, headers) and answers as each test tells it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered


@dataclass
class Receiver:
    """`fail_first[path]`: answer 500 to the first n attempts of each webhook-id there;
    `status[path]`: always answer this (410 Gone, 500...)."""

    fail_first: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _seen: Counter = field(default_factory=Counter)
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        key = (path, request.headers.get("webhook-id"))
        self._seen[key] += 1
        if path in self.status:
            status = self.status[path]
        elif self._seen[key] <= self.fail_first.get(path, 0):
            status = 500
        else:
            status = 200
        self.received.append(Received(path, dict(request.headers), body, status))
        headers = {"Location": str(request.url)} if 300 <= status < 400 else None
        return web.Response(status=status, text="ok" if status == 200 else "not now " + "x" * 600, headers=headers)

    def at(self, path: str, *, accepted: bool | None = None) -> list[Received]:
        return [r for r in self.received if r.path == path and (accepted is None or (r.status == 200) == accepted)]
