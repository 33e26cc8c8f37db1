"""Events emitted on a bare plain-SQL connection wait here until its transaction
(db.Database.sql_transaction) writes them, just before COMMIT. Kept free of the
project's imports: db.py imports it."""

from __future__ import annotations

from typing import Any

_by_connection: dict[int, list[Any]] = {}


def open_buffer(conn: object) -> None:
    _by_connection[id(conn)] = []


def close_buffer(conn: object) -> None:
    _by_connection.pop(id(conn), None)


def add(conn: object, row: Any) -> None:
    buffer = _by_connection.get(id(conn))
    if buffer is None:
        raise RuntimeError("outbound events need a transaction (Database.transaction or sql_transaction)")
    buffer.append(row)


async def flush(conn: Any) -> None:
    """Write what was emitted on `conn` (inside its transaction)."""
    rows = _by_connection.get(id(conn))
    if rows:
        from paymentd.payments.sql import insert

        _by_connection[id(conn)] = []
        await insert(conn, rows)
