"""The admission gate: `limit` places, first come first served, a bounded wait."""

from __future__ import annotations

import asyncio

import pytest

from paymentd.admission import Admission


async def test_places_pass_in_arrival_order() -> None:
    gate = Admission(2, max_wait_s=5)
    assert await gate.enter() and await gate.enter()
    order: list[int] = []

    async def waiter(n: int) -> None:
        assert await gate.enter()
        order.append(n)

    waiters = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert gate.waiting == 3 and order == []
    for _ in range(3):
        gate.leave()
        await asyncio.sleep(0.01)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2]
    assert gate.running == 2  # the two first places, handed on three times
    gate.leave(), gate.leave()
    assert gate.running == 0 and gate.waiting == 0


async def test_no_place_in_time_is_a_refusal_and_leaves_no_trace() -> None:
    gate = Admission(1, max_wait_s=0.05)
    assert await gate.enter()
    assert not await gate.enter()
    assert gate.waiting == 0
    gate.leave()
    assert gate.running == 0
    assert await gate.enter()  # free again at once


async def test_a_cancelled_waiter_does_not_keep_a_place() -> None:
    gate = Admission(1, max_wait_s=5)
    assert await gate.enter()
    gone = asyncio.create_task(gate.enter())
    behind = asyncio.create_task(gate.enter())
    await asyncio.sleep(0.01)
    gate.leave()  # the place is handed to `gone`...
    gone.cancel()  # ...whose client disconnects before it runs: the place goes to `behind`
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await behind
    assert gate.running == 1 and gate.waiting == 0


def test_a_gate_needs_a_place() -> None:
    with pytest.raises(ValueError):
        Admission(0, max_wait_s=1)
