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


async def test_an_account_alone_leaves_the_reserve_free_for_others() -> None:
    gate = Admission(8, max_wait_s=0.05)  # reserve: 8 // 4 = 2
    assert all([await gate.enter("a") for _ in range(6)])
    assert not await gate.enter("a")  # the last two places are kept for someone else
    assert await gate.enter("b") and await gate.enter("b")
    assert gate.held("a") == 6 and gate.held("b") == 2 and gate.running == 8


async def test_freed_places_go_round_robin_between_accounts() -> None:
    gate = Admission(2, max_wait_s=5, reserve=0)
    assert await gate.enter("a") and await gate.enter("a")
    served: list[str] = []

    async def waiter(tenant: str) -> None:
        assert await gate.enter(tenant)
        served.append(tenant)

    # Account a queues five more before b's two arrive; b still gets every other place.
    tasks = [asyncio.create_task(waiter("a")) for _ in range(5)]
    await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(waiter("b")) for _ in range(2)]
    await asyncio.sleep(0.01)
    for _ in range(7):
        gate.leave(served[-1] if served else "a")
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert served[:4] == ["a", "b", "a", "b"]
    assert sorted(served) == ["a"] * 5 + ["b"] * 2


async def test_an_account_over_its_share_waits_while_another_takes_the_reserve() -> None:
    gate = Admission(4, max_wait_s=5, reserve=1)
    assert all([await gate.enter("a") for _ in range(3)])
    a_waits = asyncio.create_task(gate.enter("a"))
    await asyncio.sleep(0.01)
    assert not a_waits.done()  # only the reserve is free, and a holds more than its share
    assert await gate.enter("b")  # b holds nothing: the reserve is for it
    gate.leave("b")  # the freed place is the reserve again: a, over its share, still waits
    await asyncio.sleep(0.01)
    assert not a_waits.done()
    gate.leave("a")  # a place beyond the reserve: a takes it
    assert await a_waits
    assert gate.held("a") == 3 and gate.waiting == 0


async def test_a_waiting_account_that_gives_up_lets_the_others_share_grow() -> None:
    gate = Admission(4, max_wait_s=0.05, reserve=0)
    assert await gate.enter("a") and await gate.enter("a") and await gate.enter("b") and await gate.enter("b")
    assert not await gate.enter("c")  # nothing free in time: refused, and gone from the queues
    assert gate.waiting == 0
    gate.leave("b")
    assert await gate.enter("a")  # no one else waiting: a may take it
