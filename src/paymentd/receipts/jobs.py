"""Job bodies for the queue (registered in jobs/queue.py): the periodic receipt sender,
and a per-payment one. Both take their dependencies from the worker's context."""

from __future__ import annotations

import uuid

from procrastinate import JobContext

from paymentd.receipts.email import SmtpSettings, send_due, send_one


async def send_receipts(context: JobContext, timestamp: int) -> dict:
    """Periodic: deliver every due receipt email (retries are the rows' backoff)."""
    deps = context.additional_context["deps"]
    return await send_due(deps.database, SmtpSettings.from_settings(deps.settings))


async def email_receipt(context: JobContext, payment_id: str) -> str:
    """One payment's receipt; raises EmailNotSent so the queue's backoff retries it."""
    deps = context.additional_context["deps"]
    return await send_one(deps.database, SmtpSettings.from_settings(deps.settings), uuid.UUID(payment_id))
