"""A payment's life as one list, oldest first: its status moves (with who moved them),
confirm attempts and their declines, refunds, disputes, and the audit entries of the
payment and its refunds, and the outbound webhooks sent about them. Sections other
slices add (Radar verdict) join through `extra` when their tables exist."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from paymentd.audit import query as audit_query
from paymentd.db import Database
from paymentd.money import Money
from paymentd.payments.service import PaymentView

AUDIT_LIMIT = 100


@dataclass(frozen=True)
class Item:
    at: datetime
    kind: str  # status, attempt, refund, dispute, audit, ...
    title: str
    detail: str = ""
    source: str = ""


async def attempts(database: Database, payment_id: uuid.UUID) -> list[Any]:
    async with database.sql_connection() as conn:
        return list(await conn.fetch(
            "SELECT number, payment_method, outcome, error_code, decline_code, error_message, created_at, finished_at,"
            " risk_level, risk_score, risk_outcome, risk_reason"
            " FROM payment_attempts WHERE payment_id = $1 ORDER BY number", payment_id))


async def fraud_warnings(database: Database, payment_id: uuid.UUID) -> list[Any]:
    async with database.sql_connection() as conn:
        return list(await conn.fetch(
            "SELECT provider_warning_id, fraud_type, actionable, refund_id, created_at FROM early_fraud_warnings"
            " WHERE payment_id = $1 ORDER BY created_at", payment_id))


async def audit_entries(database: Database, account_id: uuid.UUID, object_ids: list[str]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for object_id in object_ids:
        found, _ = await audit_query.page(database, account_id, audit_query.Filter(object_id=object_id),
                                          limit=AUDIT_LIMIT, cursor=None)
        entries += found
    return sorted(entries, key=lambda e: e["seq"])


def _shown(value: Any) -> str:
    return "–" if value is None else str(value)


def build(view: PaymentView, tried: list[Any], audited: list[dict[str, Any]],
          warnings: list[Any] = (), sent: list[Any] = ()) -> list[Item]:
    currency = view.payment.currency
    items: list[Item] = []
    for event in view.events:
        title = f"{event.from_status or 'created'} → {event.to_status}" if event.from_status else f"created as {event.to_status}"
        items.append(Item(event.created_at, "status", title, source=event.source))
    for attempt in tried:
        radar = (f"Radar: {attempt['risk_outcome'] or '?'}, risk {attempt['risk_level']}"
                 + (f" {attempt['risk_score']}" if attempt["risk_score"] is not None else "")
                 + (f" ({attempt['risk_reason']})" if attempt["risk_reason"] else "")) if attempt["risk_level"] else None
        detail = " · ".join(str(x) for x in (attempt["payment_method"], attempt["decline_code"] or attempt["error_code"],
                                              attempt["error_message"], radar) if x)
        items.append(Item(attempt["created_at"], "attempt", f"attempt {attempt['number']}: {attempt['outcome']}", detail))
    for refund in view.refunds:
        items.append(Item(refund.created_at, "refund",
                          f"refund {Money.from_minor(refund.amount, currency).to_api()} {currency}: {refund.status}",
                          " · ".join(x for x in (refund.reason, refund.failure_reason) if x)))
    for dispute in view.disputes:
        items.append(Item(dispute.created_at, "dispute",
                          f"dispute {Money.from_minor(dispute.amount, dispute.currency).to_api()} {dispute.currency}: "
                          f"{dispute.status}", dispute.reason or ""))
    for warning in warnings:
        items.append(Item(warning["created_at"], "warning", f"early fraud warning: {warning['fraud_type']}",
                          ("actionable" if warning["actionable"] else "not actionable")
                          + (" · refunded" if warning["refund_id"] else ""), warning["provider_warning_id"]))
    for event in sent:  # outbound webhooks (dashboard/webhooks.py `sent_for`)
        waiting = event["deliveries"] - event["delivered"] - event["given_up"]
        detail = (f"{event['delivered']} of {event['deliveries']} endpoints delivered"
                  + (f", {event['given_up']} given up" if event["given_up"] else "")
                  + (f", {waiting} pending" if waiting else "")) if event["deliveries"] else "no endpoint subscribed"
        items.append(Item(event["created_at"], "webhook", f"{event['type']} #{event['sequence']}", detail,
                          event["id"]))
    for entry in audited:
        actor = entry["actor"]["type"] + (f":{entry['actor']['id']}" if entry["actor"]["id"] else "")
        changes = ", ".join(f"{k}: {_shown(v[0])} → {_shown(v[1])}" for k, v in entry["changes"].items()
                            if isinstance(v, list) and len(v) == 2)
        items.append(Item(datetime.fromisoformat(entry["at"]), "audit", f"{entry['action']} ({entry['outcome']})",
                          changes, source=actor))
    return sorted(items, key=lambda item: item.at)
