"""A process of concurrent audit writers, for the chain-fork test:
`python -m tests.support.audit_writers DATABASE_URL TASKS ENTRIES`. Each task
appends entries in transactions of 1 to 3 entries until the process wrote ENTRIES."""

from __future__ import annotations

import asyncio
import random
import sys
import uuid

from paymentd import audit, crypto
from paymentd.config import Settings
from paymentd.db import Database


async def main(url: str, tasks: int, total: int) -> None:
    # Personal values are sealed under the keyring (PAYMENTD_ENCRYPTION_KEYS from the test's environment).
    crypto.install(Settings(database_url=url), url)
    database = Database(url, pool_size=tasks)
    left = total

    async def writer(number: int) -> None:
        nonlocal left
        while left > 0:
            batch = min(left, random.randint(1, 3))
            left -= batch
            async with database.sql_transaction() as conn:
                for _ in range(batch):
                    audit.record(conn, "test.written", account_id=None, object_type="test", object_id=uuid.uuid4(),
                                 actor=audit.Actor("system", f"writer-{number}"),
                                 changes={"n": (None, number), "email": (None, f"w{number}@example.com")})
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(writer(n) for n in range(tasks)))
    finally:
        await database.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
