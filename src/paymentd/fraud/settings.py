"""Each account's fraud settings (columns of `accounts`), with paymentd's defaults.

- `review_deadline_hours` (default 144, six days): how long a review of an uncaptured
  payment may wait for a person. Card authorizations expire after seven days at
  Stripe; the deadline comes a day before, so nobody's authorization lapses silently.
- `review_deadline_action` (default `deny`): what the deadline does. Denying cancels an
  authorization, which costs nothing; capturing a payment nobody looked at risks a
  dispute fee and the goods.
- `auto_refund_early_fraud_warnings` (default on): an actionable early fraud warning
  refunds the payment in full at once. The issuer has already said the cardholder
  denies it; a dispute would most likely follow, costing a fee and counting against
  the merchant's dispute rate, while a refund costs neither.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

DEFAULT_REVIEW_DEADLINE_HOURS = 144
DEFAULT_REVIEW_DEADLINE_ACTION = "deny"
DEADLINE_ACTIONS = ("approve", "deny")


@dataclass(frozen=True)
class FraudSettings:
    review_deadline_hours: int
    review_deadline_action: str
    auto_refund_early_fraud_warnings: bool


async def of_account(conn: asyncpg.Connection, account_id: uuid.UUID) -> FraudSettings:
    row = await conn.fetchrow(
        "SELECT review_deadline_hours, review_deadline_action, auto_refund_early_fraud_warnings"
        " FROM accounts WHERE id = $1", account_id)
    if row is None:
        return FraudSettings(DEFAULT_REVIEW_DEADLINE_HOURS, DEFAULT_REVIEW_DEADLINE_ACTION, True)
    return FraudSettings(
        row["review_deadline_hours"] or DEFAULT_REVIEW_DEADLINE_HOURS,
        row["review_deadline_action"] or DEFAULT_REVIEW_DEADLINE_ACTION,
        row["auto_refund_early_fraud_warnings"],
    )


async def review_deadline_hours(conn: asyncpg.Connection, account_id: uuid.UUID) -> int:
    return (await of_account(conn, account_id)).review_deadline_hours
