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
    pending: set[asyncio.Task] = set()

    def notified(connection: object, pid: int, channel: str, payload: str) -> None:
        try:
            endpoint_id = uuid.UUID(payload)
        except ValueError:
            return
        task = asyncio.ensure_future(wake(endpoint_id))
        pending.add(task)
        task.add_done_callback(pending.discard)

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
