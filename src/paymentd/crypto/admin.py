"""Key operations behind `paymentd keys`: rotate, status, retire, rewrap.

Each is a short transaction on the data-key table; the re-encryption itself is
the background job (reencrypt.py), so none of these holds up the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from paymentd import audit, crypto
from paymentd.crypto import store
from paymentd.crypto.cipher import PREFIX
from paymentd.crypto.fields import FIELDS
from paymentd.crypto.reencrypt import settle_s
from paymentd.db import Database

PLAINTEXT = "(plaintext)"


class RetireRefused(Exception):
    """The key still protects rows, is the primary, or may still be in use."""


async def rotate(database: Database) -> str:
    """A new primary data key; the old one stays for reading until the job is done."""
    ring = crypto.keyring()
    dek_id, purpose, kek_id, wrapped = store.new_key(ring.source, store.DATA)
    async with database.sql_transaction() as conn:
        old = await conn.fetchval(
            "UPDATE data_keys SET state = 'active', demoted_at = clock_timestamp()"
            " WHERE purpose = 'data' AND state = 'primary' RETURNING id"
        )
        await conn.execute(
            "INSERT INTO data_keys (id, purpose, state, kek_id, wrapped) VALUES ($1, $2, 'primary', $3, $4)",
            dek_id, purpose, kek_id, wrapped,
        )
        audit.record(conn, "encryption_key.rotated", account_id=None, object_type="encryption_key",
                     object_id=dek_id, changes={"primary": (old, dek_id)})
    await ring.refresh()
    return dek_id


@dataclass(frozen=True)
class Status:
    keys: list[dict[str, Any]]  # every data key: id, purpose, state, KEK, times
    rows: dict[str, dict[str, int]]  # "table.column" -> key id (or "(plaintext)") -> rows


async def status(database: Database) -> Status:
    async with database.sql_connection() as conn:
        keys = [dict(r) for r in await conn.fetch(
            "SELECT id, purpose, state, kek_id, created_at, demoted_at, retired_at FROM data_keys"
            " ORDER BY created_at, id")]
        rows: dict[str, dict[str, int]] = {}
        for field in list(FIELDS):
            expr = field.sealed_text()
            found = await conn.fetch(
                f"SELECT CASE WHEN {expr} LIKE '{PREFIX}%' THEN split_part({expr}, ':', 2) ELSE '{PLAINTEXT}' END"
                f' AS key, count(*) AS n FROM {field.table} WHERE "{field.column}" IS NOT NULL GROUP BY 1 ORDER BY 1'
            )
            rows[f"{field.table}.{field.column}"] = {r["key"]: r["n"] for r in found}
    for key in keys:
        for name in ("created_at", "demoted_at", "retired_at"):
            key[name] = key[name].isoformat() if key[name] else None
    return Status(keys, rows)


async def retire(database: Database, dek_id: str, *, refresh_s: float) -> None:
    """Drop a data key's material for good. Refused while any row is sealed under it,
    while it is the primary, or before every process has stopped sealing with it."""
    async with database.sql_transaction() as conn:
        key = await conn.fetchrow(
            "SELECT purpose, state, clock_timestamp() - demoted_at AS since FROM data_keys WHERE id = $1 FOR UPDATE",
            dek_id)
        if key is None or key["purpose"] != store.DATA:
            raise RetireRefused(f"no data key {dek_id!r}")
        if key["state"] == store.RETIRED:
            raise RetireRefused(f"key {dek_id} is already retired")
        if key["state"] == store.PRIMARY:
            raise RetireRefused(f"key {dek_id} is the primary: rotate first")
        if key["since"] is not None and key["since"] < timedelta(seconds=settle_s(refresh_s)):
            raise RetireRefused(f"key {dek_id} was primary moments ago: a process may still seal with it")
        using: dict[str, int] = {}
        for field in list(FIELDS):
            count = await conn.fetchval(
                f"SELECT count(*) FROM {field.table} WHERE {field.sealed_text()} LIKE $1", f"{PREFIX}{dek_id}:%")
            if count:
                using[f"{field.table}.{field.column}"] = count
        if using:
            detail = ", ".join(f"{name}: {n}" for name, n in using.items())
            raise RetireRefused(f"key {dek_id} still protects rows ({detail}); let `keys reencrypt` finish")
        await conn.execute(
            "UPDATE data_keys SET state = 'retired', wrapped = NULL, retired_at = clock_timestamp() WHERE id = $1",
            dek_id)
        audit.record(conn, "encryption_key.retired", account_id=None, object_type="encryption_key",
                     object_id=dek_id, changes={"state": (key["state"], store.RETIRED)})


async def rewrap(database: Database) -> int:
    """Every live data key wrapped again under the primary KEK (the second half of a
    KEK rotation: configure the new KEK first in the list, rewrap, drop the old one)."""
    source = crypto.keyring().source
    done = 0
    async with database.sql_transaction() as conn:
        for row in await conn.fetch("SELECT id, kek_id, wrapped FROM data_keys WHERE state <> 'retired' FOR UPDATE"):
            if row["kek_id"] == source.primary_id:
                continue
            key = source.unwrap(row["kek_id"], row["id"], bytes(row["wrapped"]))
            kek_id, wrapped = source.wrap(row["id"], key)
            await conn.execute("UPDATE data_keys SET kek_id = $2, wrapped = $3 WHERE id = $1", row["id"], kek_id,
                               wrapped)
            audit.record(conn, "encryption_key.rewrapped", account_id=None, object_type="encryption_key",
                         object_id=row["id"], changes={"kek_id": (row["kek_id"], kek_id)})
            done += 1
    return done
