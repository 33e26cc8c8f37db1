"""What the payments list's search box finds, and the filters beside it.

Search covers: a payment's id (opens it), its Stripe PaymentIntent id (`pi_...`, opens
it), a user's id, and a user's email, matched through the blind index (exact address,
any case: emails are sealed, so no partial match). Descriptions and metadata are
sealed too and are not searched. Anything else is a 400 that says so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from paymentd import crypto
from paymentd.crypto.orm import email_index
from paymentd.db import Database
from paymentd.errors import InvalidRequest
from paymentd.payments import service as payments
from paymentd.payments.repository import HistoryFilter
from paymentd.payments.states import PaymentStatus

SEARCH_HELP = ("Search finds a payment id, a Stripe PaymentIntent id (pi_...), a user id, or a user's whole email "
               "address. Descriptions and metadata are encrypted and not searched.")
STATUSES = tuple(PaymentStatus.__members__)


@dataclass(frozen=True)
class Found:
    """Either one payment to open, or a filter for the list (`nothing` when no user matched)."""

    payment_id: uuid.UUID | None = None
    where: HistoryFilter = HistoryFilter()
    nothing: bool = False


def _day(raw: str, param: str) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.combine(datetime.strptime(raw, "%Y-%m-%d").date(), time(), tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(f"`{param}` must be a date like 2026-12-01.", code="parameter_invalid",
                             param=param) from None


async def find(database: Database, account_id: uuid.UUID, q: str, status: str, date_from: str,
               date_to: str) -> Found:
    q = q.strip()
    if len(q) > 320:
        raise InvalidRequest("The search is too long.", code="parameter_invalid", param="q")
    if status and status not in STATUSES:
        raise InvalidRequest(f"Unknown status `{status}`.", code="parameter_invalid", param="status")
    start, end = _day(date_from, "from"), _day(date_to, "to")
    if end is not None:
        end += timedelta(days=1)  # `to` is the last day shown
    if start and end and start >= end:
        raise InvalidRequest("`from` must not be after `to`.", code="parameter_invalid", param="from")
    base = payments.history_filter(None, [status] if status else [], start, end)
    if not q:
        return Found(where=base)
    async with database.sql_connection() as conn:
        if q.startswith("pi_"):
            found = await conn.fetchval("SELECT id FROM payments WHERE account_id = $1 AND stripe_payment_intent_id = $2",
                                        account_id, q)
            return Found(payment_id=found) if found else Found(nothing=True)
        try:
            as_id = uuid.UUID(q)
        except ValueError:
            as_id = None
        if as_id is not None:
            if await conn.fetchval("SELECT 1 FROM payments WHERE account_id = $1 AND id = $2", account_id, as_id):
                return Found(payment_id=as_id)
            return Found(where=HistoryFilter(as_id, base.statuses, base.created_gte, base.created_lt))
        if "@" in q:
            users = await conn.fetch("SELECT id FROM users WHERE account_id = $1 AND email_index = $2",
                                     account_id, email_index(crypto.keyring(), q))
            if not users:
                return Found(nothing=True)
            return Found(where=HistoryFilter(None, base.statuses, base.created_gte, base.created_lt,
                                             user_ids=tuple(u["id"] for u in users)))
    raise InvalidRequest(SEARCH_HELP, code="parameter_invalid", param="q")
