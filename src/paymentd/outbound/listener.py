"""Wakes the delivery job the moment an event commits: migration 0010's trigger
NOTIFYs `paymentd_outbound` with the endpoint's id (delivered only on COMMIT), and
each worker process LISTENs and defers that endpoint's job (at most one waiting).
Only latency: a missed notification is caught by the periodic sweep."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from paymentd.db import libpq_url
from paymentd.logs import log

CHANNEL = "paymentd_outbound"


async def listen(database_url: str, wake: Callable[[uuid.UUID], Awaitable[object]]) -> None:
    """Until cancelled; reconnects with backoff when the connection is lost."""
    delay = 1.0
    # Endpoints whose wake-up is on its way: notifications meanwhile ask for one more
    # after it (that one surely starts a job after their events committed), not one each.
    waking: dict[uuid.UUID, asyncio.Task] = {}
    again: set[uuid.UUID] = set()

    def start(endpoint_id: uuid.UUID) -> None:
        task = asyncio.ensure_future(wake(endpoint_id))
        waking[endpoint_id] = task

        def done(_: asyncio.Task) -> None:
            waking.pop(endpoint_id, None)
            if endpoint_id in again:
                again.discard(endpoint_id)
                start(endpoint_id)

        task.add_done_callback(done)

    def notified(connection: object, pid: int, channel: str, payload: str) -> None:
        try:
            endpoint_id = uuid.UUID(payload)
        except ValueError:
            return
        if endpoint_id in waking:
            again.add(endpoint_id)
        else:
            start(endpoint_id)

    while True:
        connection = None
        try:
            connection = await asyncpg.connect(libpq_url(database_url))
            await connection.add_listener(CHANNEL, notified)
            delay = 1.0
            while not connection.is_closed():
                await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - log, wait, reconnect
            log.warning("outbound.listener_lost", error_type=type(error).__name__, retry_in_s=delay)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
