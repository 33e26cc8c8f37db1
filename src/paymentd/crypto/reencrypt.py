"""The re-encryption job: every sealed field not under the primary key (an older key,
or plaintext from before encryption) is sealed again under it, while the API serves.

Keyset pages in primary-key order, each page its own short transaction; rows an API
request (or another pass, busy with another column) holds are skipped (`SKIP LOCKED`)
and caught by the next pass, and the write
is a compare-and-set on the old value, so a concurrent change is never overwritten.
Running it twice, or two at once, is harmless; killed, it starts again and the
filter skips what is done. It ends when a pass finds nothing after every process
has had time to adopt the new primary (a process still sealing under the old one
until its keyring refresh would otherwise leave a row behind).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import asyncpg

from paymentd import crypto
from paymentd.crypto.cipher import PREFIX, SealError
from paymentd.crypto.fields import BYTES, EVENT, FIELDS, JSON, Field
from paymentd.db import Database
from paymentd.logs import log

BATCH = 200


def settle_s(refresh_s: float) -> float:
    """How long after a rotation a process may still seal under the old primary: its
    keyring refresh, twice over, and a margin for a transaction that sealed just before."""
    return 2 * refresh_s + 5


def _needs_work(field: Field) -> str:
    expr = field.sealed_text()
    return f'"{field.column}" IS NOT NULL AND ({expr} IS NULL OR {expr} NOT LIKE $1)'


def _sql_type(field: Field) -> str:
    return {JSON: "jsonb", EVENT: "jsonb", BYTES: "bytea"}.get(field.kind, "text")


def _stored(field: Field, value: Any) -> Any:
    """A value as the UPDATE's arrays carry it (JSON as text, cast in SQL)."""
    return json.dumps(value) if field.kind in (JSON, EVENT) else value


async def _page(conn: asyncpg.Connection, ring: crypto.Keyring, field: Field, after: tuple | None,
                tally: Counter[str]) -> tuple | None:
    """One page sealed again; the last key seen (None: the field is done)."""
    keys = [name for name, _ in field.key]
    cols = ", ".join(f'"{k}"' for k in keys)
    params: list[Any] = [f"{PREFIX}{ring.primary_id}:%"]
    where = _needs_work(field)
    if after is not None:
        marks = ", ".join(f"${i}::{t}" for i, (_, t) in enumerate(field.key, start=2))
        where += f" AND ({cols}) > ({marks})"
        params.extend(after)
    rows = await conn.fetch(
        f'SELECT {cols}, "{field.column}" AS value FROM {field.table} WHERE {where}'
        f" ORDER BY {cols} LIMIT {BATCH} FOR UPDATE SKIP LOCKED",
        *params,
    )
    if not rows:
        return None
    columns: list[list[Any]] = [[] for _ in keys]
    olds, news, plains = [], [], []
    for row in rows:
        row_id = field.row_id(lambda name: row[name])
        try:
            plain = field.open(ring, row["value"], row_id)
        except SealError as error:
            # Altered, or moved from another row: never "repaired" by sealing it here.
            log.error("crypto.reencrypt_unreadable", table=field.table, column=field.column, row=row_id,
                      error=str(error))
            tally["unreadable"] += 1
            continue
        for i, name in enumerate(keys):
            columns[i].append(row[name])
        plains.append(plain)
        olds.append(_stored(field, row["value"]))
        news.append(_stored(field, field.seal(ring, plain, row_id)))
    if olds:
        n = len(keys)
        arrays = ", ".join(f"${i + 1}::{t}[]" for i, (_, t) in enumerate(field.key))
        kind = "text" if field.kind in (JSON, EVENT) else _sql_type(field)
        cast = f"::{_sql_type(field)}" if field.kind in (JSON, EVENT) else ""
        names = ", ".join(keys)
        match = " AND ".join(f't."{k}" = v."{k}"' for k in keys)
        status = await conn.execute(
            f'UPDATE {field.table} AS t SET "{field.column}" = v.new{cast}'
            f" FROM unnest({arrays}, ${n + 1}::{kind}[], ${n + 2}::{kind}[]) AS v({names}, old, new)"
            f' WHERE {match} AND t."{field.column}" = v.old{cast}',
            *columns, olds, news,
        )
        if (field.table, field.column) == ("users", "email"):
            # A user from before encryption has no blind index yet: it gets one with its seal.
            from paymentd.crypto.orm import email_index

            await conn.execute(
                "UPDATE users SET email_index = v.ix FROM unnest($1::uuid[], $2::text[]) AS v(id, ix)"
                " WHERE users.id = v.id AND users.email_index IS NULL",
                columns[0], [email_index(ring, p) for p in plains])
        tally["sealed"] += int(status.split()[-1])
        tally["changed_meanwhile"] += len(olds) - int(status.split()[-1])
    return tuple(rows[-1][k] for k in keys)


async def one_pass(database: Database, ring: crypto.Keyring) -> Counter[str]:
    """Every field, page by page; what was sealed again (and skipped)."""
    tally: Counter[str] = Counter()
    for field in [f for f in FIELDS if f.rewritable]:
        after: tuple | None = None
        while True:
            async with database.sql_transaction() as conn:
                after = await _page(conn, ring, field, after, tally)
            if after is None:
                break
    return tally


async def pending(database: Database, ring: crypto.Keyring) -> int:
    """Rows not under the primary key, locked or not (the passes skip locked ones)."""
    total = 0
    async with database.sql_connection() as conn:
        for field in [f for f in FIELDS if f.rewritable]:
            total += await conn.fetchval(
                f"SELECT count(*) FROM {field.table} WHERE {_needs_work(field)}", f"{PREFIX}{ring.primary_id}:%")
    return total


async def reencrypt(database: Database, *, refresh_s: float, pause_s: float = 1.0) -> dict[str, Any]:
    """Passes until one finds nothing to do after the settling time (see the docstring)."""
    ring = crypto.keyring()
    await ring.refresh()  # the primary as the table has it now, not as this process last saw it
    started, total = time.monotonic(), Counter[str]()
    while True:
        tally = await one_pass(database, ring)
        total.update(sealed=tally["sealed"], changed_meanwhile=tally["changed_meanwhile"])
        quiet = not tally["sealed"] and not tally["changed_meanwhile"]
        if quiet and time.monotonic() - started >= settle_s(refresh_s):
            if await pending(database, ring) <= tally["unreadable"]:
                break
        await asyncio.sleep(pause_s)
        await ring.refresh()
    result = {"primary": ring.primary_id, "sealed": total["sealed"], "unreadable": tally["unreadable"]}
    log.info("crypto.reencrypted", **result)
    return result
