"""The audit writer's one-round-trip path: a process's remembered chain head is used
only while the chain's row still holds it. A head moved by another process, or a
seal whose transaction did not commit, never forks a chain: the writer falls back
to locking a free head, and `verify` passes. Two Database objects stand for two
processes (each has its own remembered heads); the e2e test runs real processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from paymentd import audit
from paymentd.audit.verify import verify
from paymentd.db import Database
from tests.support.databases import admin_url, fresh_database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Its own database: no server thread of the session moves these chains meanwhile.
    with admin_url(tmp_path_factory.mktemp("pg")) as admin, fresh_database(admin) as database:
        yield database


@pytest.fixture
async def two(url: str) -> AsyncIterator[tuple[Database, Database]]:
    first, second = Database(url, pool_size=4), Database(url, pool_size=4)
    yield first, second
    await first.dispose()
    await second.dispose()


async def write(database: Database, how_many: int = 1) -> list[asyncpg.Record]:
    ids = [uuid.uuid4() for _ in range(how_many)]
    async with database.sql_transaction() as conn:
        for entry_id in ids:
            audit.record(conn, "test.written", account_id=None, object_type="test", object_id=entry_id,
                         changes={"n": (None, 1)})
    async with database.sql_connection() as conn:
        return await conn.fetch("SELECT chain, chain_seq, prev_hash, hash FROM audit_entries"
                                " WHERE object_id = ANY($1::text[]) ORDER BY chain_seq", [str(i) for i in ids])


async def head(database: Database, chain: int) -> tuple[int, str]:
    async with database.sql_connection() as conn:
        row = await conn.fetchrow("SELECT length, head_hash FROM audit_chains WHERE chain = $1", chain)
    return row["length"], row["head_hash"]


async def assert_verifies(database: Database) -> None:
    report = await verify(database, None)
    assert report.ok, report.problem


async def test_a_process_keeps_writing_the_chain_it_remembers(two: tuple[Database, Database]) -> None:
    first, _ = two
    rows = [row for _ in range(6) for row in await write(first, 2)]
    # Locking a free head starts at a random chain (16 of them): six transactions on
    # one chain, each right after the last, is the remembered head at work.
    assert len({row["chain"] for row in rows}) == 1
    assert [row["chain_seq"] for row in rows] == list(range(rows[0]["chain_seq"], rows[0]["chain_seq"] + 12))
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(rows, rows[1:]))
    assert await head(first, rows[0]["chain"]) == (rows[-1]["chain_seq"], rows[-1]["hash"])
    await assert_verifies(first)


async def test_a_head_moved_by_another_process_is_not_written_onto(two: tuple[Database, Database]) -> None:
    first, second = two
    [mine] = await write(first)
    # The other process writes the same chain (here: it is handed the head first remembers).
    second.audit_heads.give_back((mine["chain"], mine["chain_seq"], mine["hash"]))
    [theirs] = await write(second)
    assert (theirs["chain"], theirs["prev_hash"]) == (mine["chain"], mine["hash"])
    # First's remembered head is stale now: its conditional write matches nothing and it
    # falls back to locking a free head; nothing links to `mine` twice.
    [after] = await write(first)
    if after["chain"] == mine["chain"]:  # the free head it locked may be the same chain, now current
        assert (after["chain_seq"], after["prev_hash"]) == (theirs["chain_seq"], theirs["hash"])
    async with first.sql_connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_entries WHERE chain = $1 AND prev_hash = $2",
                                   mine["chain"], mine["hash"]) == 1
    await assert_verifies(first)


async def test_a_seal_whose_commit_fails_is_not_remembered(two: tuple[Database, Database]) -> None:
    """COMMIT fails after the seal wrote (a deferred constraint): neither the entry nor
    the head it would have left survives, in the table or in the process's memory."""
    first, _ = two
    [before] = await write(first)
    async with first.sql_connection() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS commit_fails (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    lost = uuid.uuid4()
    with pytest.raises(asyncpg.UniqueViolationError):
        async with first.sql_transaction() as conn:
            await conn.execute("INSERT INTO commit_fails VALUES (1), (1)")
            audit.record(conn, "test.written", account_id=None, object_type="test", object_id=lost,
                         changes={"n": (None, 1)})
    assert first.audit_heads.borrow() is None  # lent to the failed seal, never given back
    assert await head(first, before["chain"]) == (before["chain_seq"], before["hash"])
    [after] = await write(first)
    async with first.sql_connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_entries WHERE object_id = $1", str(lost)) == 0
    assert after["chain_seq"] >= 1
    await assert_verifies(first)


async def test_many_writers_in_two_processes_never_fork(two: tuple[Database, Database]) -> None:
    async def writer(database: Database) -> None:
        for n in range(25):
            await write(database, 1 + n % 3)

    await asyncio.gather(*(writer(database) for database in two for _ in range(4)))
    async with two[0].sql_connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM (SELECT chain, prev_hash FROM audit_entries"
                                   " GROUP BY 1, 2 HAVING count(*) > 1) forks") == 0
    await assert_verifies(two[0])
