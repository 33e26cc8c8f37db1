"""Work that outlives the request that started it (API.md, "Response budget").

A call to Stripe runs as a task; the request waits for it at most its budget,
then answers 202 while the task finishes and records the outcome. On shutdown
the process drains these tasks; if it dies instead, the reconciler settles them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from paymentd.logs import log

T = TypeVar("T")


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    @staticmethod
    async def within(task: asyncio.Task[Any], seconds: float) -> bool:
        """True when the task finished within `seconds` (its result is then ready)."""
        done, _ = await asyncio.wait({task}, timeout=max(seconds, 0))
        return task in done

    @staticmethod
    def deadline(seconds: float) -> float:
        """The loop time `seconds` from now. A request's budget is fixed once, when its
        work starts, so the database work before the wait on Stripe comes out of it too."""
        return asyncio.get_running_loop().time() + seconds

    @staticmethod
    async def until(task: asyncio.Task[Any], deadline: float) -> bool:
        """True when the task finished by `deadline` (loop time; see `deadline`)."""
        return await Background.within(task, deadline - asyncio.get_running_loop().time())

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Expected for work whose caller already had its answer (a decline after a
            # 202 is recorded on the payment); anything else is worth a look.
            log.info("background.finished_with_error", error_type=type(task.exception()).__name__)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
