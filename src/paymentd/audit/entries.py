"""`record()`: the one function every audited action calls, inside the unit of work
that makes the change. Entries wait in that unit's buffer (an ORM session's `info`,
a plain-SQL transaction's connection, or a `payments.sql.Batch`) and are sealed onto
a chain by `writer.seal` just before COMMIT: a rolled-back change leaves no entry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd.audit import context
from paymentd.audit.canonical import plain
from paymentd.audit.context import Actor
from paymentd.audit.personal import split

_SESSION_KEY = "paymentd.audit"


@dataclass
class Pending:
    """An entry recorded but not yet sealed (no chain, no hash yet)."""

    action: str
    account_id: str | None
    actor: Actor
    object_type: str | None
    object_id: str | None
    request_id: str | None
    client_ip: str | None
    outcome: str
    count: int
    changes: dict[str, Any]
    personal: dict[str, Any]
    at: datetime
    id: uuid.UUID = field(default_factory=uuid.uuid4)


# Plain-SQL transactions (Database.sql_transaction, or a session's driver joined by
# db.driver_of) register their connection's buffer here for as long as they last.
_by_connection: dict[int, list[Pending]] = {}


def open_buffer(conn: asyncpg.Connection, buffer: list[Pending] | None = None) -> list[Pending]:
    buffer = buffer if buffer is not None else []
    _by_connection[id(conn)] = buffer
    return buffer


def close_buffer(conn: asyncpg.Connection) -> None:
    _by_connection.pop(id(conn), None)


def session_buffer(session: AsyncSession) -> list[Pending]:
    return session.info.setdefault(_SESSION_KEY, [])


def take_session_buffer(session: AsyncSession) -> list[Pending]:
    return session.info.pop(_SESSION_KEY, None) or []


def buffer_of(sink: object) -> list[Pending]:
    if isinstance(sink, AsyncSession):
        return session_buffer(sink)
    if isinstance(sink, asyncpg.Connection):
        buffer = _by_connection.get(id(sink))
        if buffer is None:
            raise RuntimeError("audit entries need a transaction (Database.transaction or sql_transaction)")
        return buffer
    return sink.audit  # type: ignore[attr-defined]  # a payments.sql.Batch


def record(
    sink: object,
    action: str,
    *,
    account_id: uuid.UUID | str | None,
    object_type: str | None,
    object_id: object = None,
    changes: dict[str, Any] | None = None,
    actor: Actor | None = None,
    outcome: str = "success",
    count: int = 1,
    request_id: str | None = None,
    client_ip: str | None = None,
) -> None:
    """Note one audited action in `sink`'s unit of work. `changes` maps a field to
    (before, after); personal fields among them are sealed, not hashed in clear."""
    now = context.current()
    clear, private = split({key: [plain(before), plain(after)] for key, (before, after) in (changes or {}).items()})
    buffer_of(sink).append(Pending(
        action=action,
        account_id=str(account_id) if account_id is not None else None,
        actor=actor or now.actor or context.SYSTEM,
        object_type=object_type,
        object_id=str(object_id) if object_id is not None else None,
        request_id=request_id or now.request_id,
        client_ip=client_ip or now.client_ip,
        outcome=outcome,
        count=count,
        changes=clear,
        personal=private,
        at=datetime.now(UTC),
    ))


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields whose values differ, as (before, after)."""
    return {key: (before.get(key), value) for key, value in after.items() if before.get(key) != value}
