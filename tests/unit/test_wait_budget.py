"""The response budget counts from the request's arrival, not from when its handler ran."""

from __future__ import annotations

import time
from types import SimpleNamespace

from starlette.requests import Request
from starlette.responses import Response

from paymentd.deps import wait_budget


def _request(*, queued_s: float, prefer: str | None = None) -> Request:
    settings = SimpleNamespace(sync_budget_ms=400, max_wait_s=30)
    headers = [(b"prefer", prefer.encode())] if prefer else []
    scope = {"type": "http", "method": "POST", "path": "/api/payments/confirm", "headers": headers,
             "state": {"received_at": time.perf_counter() - queued_s},
             "app": SimpleNamespace(state=SimpleNamespace(settings=settings))}
    return Request(scope)


async def test_time_queued_before_the_handler_comes_out_of_the_budget() -> None:
    assert 0.0 < await wait_budget(_request(queued_s=0.3), Response()) <= 0.1


async def test_a_request_queued_past_its_budget_waits_no_more() -> None:
    assert await wait_budget(_request(queued_s=0.9), Response()) == 0.0


async def test_prefer_wait_counts_from_arrival_too() -> None:
    response = Response()
    left = await wait_budget(_request(queued_s=1.0, prefer="wait=5"), response)
    assert 3.9 < left <= 4.0
    assert response.headers["Preference-Applied"] == "wait=5"
