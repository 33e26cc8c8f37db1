"""Signed outbound webhooks to the merchant's own applications (API.md "Outbound
webhooks", Standard Webhooks).

`emit(sink, type, account_id=, object_type=, object_id=, payload=)` records an event in
the caller's unit of work (an ORM session, a plain-SQL transaction's connection, or a
`payments.sql.Batch`), exactly like `audit.record`: the change and its event commit
together or not at all. The database numbers it per object and fans it out to the
subscribed endpoints (migration 0010); `delivery.py` sends it through the job queue.

This module stays import-light (db.py imports `pending`), so `emit` loads the rest on use.
"""

from __future__ import annotations

from typing import Any

from paymentd.outbound.types import EVENT_TYPES, payment_event_type

__all__ = ["EVENT_TYPES", "emit", "payment_event_type"]


def emit(sink: object, type: str, *, account_id: Any, object_type: str, object_id: Any,
         payload: dict[str, Any]) -> None:
    from paymentd.outbound.outbox import emit as _emit

    _emit(sink, type, account_id=account_id, object_type=object_type, object_id=object_id, payload=payload)
