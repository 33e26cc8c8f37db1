"""The per-account limit's in-process counter (no Redis): `limits`' sliding window
counter rule on one-second windows, counted apart per account, bounded in memory."""

from __future__ import annotations

import asyncio

from paymentd.auth.throttle import Throttle, _LocalWindows


def hits(windows: _LocalWindows, ident: str, limit: int, now: float, tries: int) -> int:
    return sum(windows.hit(ident, limit, now) for _ in range(tries))


def test_a_second_allows_the_limit_and_no_more() -> None:
    windows = _LocalWindows()
    assert hits(windows, "a", 5, 10.0, 9) == 5
    assert hits(windows, "b", 5, 10.2, 9) == 5  # another account counts apart


def test_the_previous_second_weighs_by_how_much_of_it_the_window_still_covers() -> None:
    windows = _LocalWindows()
    assert hits(windows, "a", 5, 10.0, 5) == 5
    # Half-way through the next second, half of the previous 5 still count: 2.5 + 3 allowed.
    assert hits(windows, "a", 5, 11.5, 9) == 3
    # After a whole idle second nothing of before is left.
    assert hits(windows, "a", 5, 13.0, 9) == 5


def test_idle_counters_are_dropped_when_the_table_is_full() -> None:
    windows = _LocalWindows(max_keys=3)
    for n, ident in enumerate("abc"):
        windows.hit(ident, 5, 10.0 + n * 0.1)
    windows.hit("d", 5, 20.0)
    assert set(windows._windows) == {"d"}


def test_without_redis_an_account_over_its_limit_is_told_when_to_retry(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from paymentd.auth import throttle as module

    monkeypatch.setattr(module.time, "time", lambda: 100.25)
    throttle = Throttle(redis_url=None, default_rps=3, auth_fail_limit=0, auth_fail_window_s=1)

    async def run() -> list[int | None]:
        return [await throttle.account_retry_after("acct", None) for _ in range(4)] + \
            [await throttle.account_retry_after("acct", 0), await throttle.account_retry_after("other", 10)]

    # The fourth in one second waits (Retry-After never 0); no limit (0) and another account pass.
    assert asyncio.run(run()) == [None, None, None, 1, None, None]
