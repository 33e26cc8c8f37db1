"""`emit`: note one event in the caller's unit of work (see the package docstring)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from paymentd.outbound import pending
from paymentd.outbound.models import OutboundEvent
from paymentd.outbound.types import EVENT_TYPES


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def emit(sink: object, type: str, *, account_id: Any, object_type: str, object_id: Any,
         payload: dict[str, Any]) -> OutboundEvent:
    """Record `type` about the object (`payload`: the object as GET returns it, in JSON
    form) in `sink`'s transaction; its `sequence` is given by the database."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown outbound event type {type!r}")
    row = OutboundEvent(id=new_event_id(), account_id=account_id, type=type, object_type=object_type,
                        object_id=str(object_id), payload=payload, created_at=datetime.now(UTC))
    if isinstance(sink, asyncpg.Connection):
        pending.add(sink, row)
    else:
        sink.add(row)  # type: ignore[attr-defined]  # an ORM session or a payments.sql.Batch
    return row
