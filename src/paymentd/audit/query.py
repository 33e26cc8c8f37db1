"""Reading the trail for `GET /api/audit`: one account's entries, newest first,
keyset-paged on `seq` (entries committed while a client pages land before its
cursor, so pages never repeat an entry), with personal data unsealed for display."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paymentd import paging
from paymentd.audit import personal
from paymentd.audit.canonical import timestamp
from paymentd.errors import InvalidRequest

ACTOR_TYPES = ("api_key", "webhook", "reconciler", "operator", "system")
_MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Filter:
    object_id: str | None = None
    actions: tuple[str, ...] = ()
    actor_type: str | None = None
    actor_id: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


def parse_filter(object_id: str | None, actions: list[str], actor: str | None, created_gte: datetime | None,
                 created_lt: datetime | None) -> Filter:
    actor_type = actor_id = None
    if actor is not None:
        actor_type, _, actor_id = actor.partition(":")
        if actor_type not in ACTOR_TYPES:
            raise InvalidRequest(f"`actor` is a type ({', '.join(ACTOR_TYPES)}), optionally followed by `:id`.",
                                 code="parameter_invalid", param="actor")
    for action in actions:
        if not action or len(action) > 100:
            raise InvalidRequest("Unknown action.", code="parameter_invalid", param="action")
    return Filter(object_id, tuple(actions), actor_type, actor_id or None,
                  _bound(created_gte, "created_gte"), _bound(created_lt, "created_lt"))


def _bound(value: datetime | None, param: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        moment = None
    if moment is None or not 1 < moment.year < 9999:
        raise InvalidRequest("The date is out of range.", code="parameter_invalid", param=param)
    return moment


def encode_cursor(seq: int) -> str:
    return paging.encode_cursor({"seq": seq})


def decode_cursor(cursor: str) -> int:
    seq = paging.decode_cursor(cursor).get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq <= _MAX_SEQ:
        raise paging.bad_cursor()
    return seq


async def page(database: Any, account_id: uuid.UUID, where: Filter, *, limit: int,
               cursor: str | None) -> tuple[list[dict[str, Any]], bool]:
    clauses, args = ["account_id = $1"], [account_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if where.object_id is not None:
        clauses.append(f"object_id = {arg(where.object_id)}")
    if where.actions:
        clauses.append(f"action = ANY({arg(list(where.actions))}::text[])")
    if where.actor_type is not None:
        clauses.append(f"actor_type = {arg(where.actor_type)}")
    if where.actor_id is not None:
        clauses.append(f"actor_id = {arg(where.actor_id)}")
    if where.created_gte is not None:
        clauses.append(f"at >= {arg(where.created_gte)}")
    if where.created_lt is not None:
        clauses.append(f"at < {arg(where.created_lt)}")
    if cursor is not None:
        clauses.append(f"seq < {arg(decode_cursor(cursor))}")
    query = f"SELECT * FROM audit_entries WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT {arg(limit + 1)}"
    async with database.sql_connection() as conn:
        rows = await conn.fetch(query, *args)
    return [present(row) for row in rows[:limit]], len(rows) > limit


def present(row: Any) -> dict[str, Any]:
    """An entry as API.md shows it; personal changes unsealed ("[erased]" once erased)."""
    changes = json.loads(row["changes"]) if isinstance(row["changes"], str) else dict(row["changes"])
    if row["personal_commitment"] is not None:
        values = personal.opened(row["id"], row["personal"])
        if values is None:
            changes.update({"personal": ["[erased]", "[erased]"]})
        else:
            changes.update(values)
    return {
        "seq": row["seq"], "at": timestamp(row["at"]), "action": row["action"],
        "object": {"type": row["object_type"], "id": row["object_id"]},
        "actor": {"type": row["actor_type"], "id": row["actor_id"]},
        "request_id": row["request_id"], "client_ip": row["client_ip"], "outcome": row["outcome"],
        "count": row["count"], "changes": changes, "chain": row["chain"], "chain_seq": row["chain_seq"],
        "prev_hash": row["prev_hash"], "hash": row["hash"],
    }
