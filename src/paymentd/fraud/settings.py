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
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit

DEFAULT_REVIEW_DEADLINE_HOURS = 144
DEFAULT_REVIEW_DEADLINE_ACTION = "deny"
DEADLINE_ACTIONS = ("approve", "deny")
MAX_REVIEW_DEADLINE_HOURS = 720  # as the accounts table's check


class _Keep:
    """An unchanged setting (None means: back to the default)."""


KEEP = _Keep()


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


async def update(
    session: AsyncSession,
    account_name: str,
    *,
    review_deadline_hours: int | None | _Keep = KEEP,
    review_deadline_action: str | None | _Keep = KEEP,
    auto_refund_early_fraud_warnings: bool | _Keep = KEEP,
) -> dict[str, tuple[object, object]]:
    """Change an account's fraud settings (None: back to the default); audited
    `account.fraud_settings_changed` by whoever acts (the operator, from the CLI).
    Returns what changed. Raises ValueError for values out of range, LookupError for no account."""
    from paymentd.auth.models import Account

    if not isinstance(review_deadline_hours, _Keep) and review_deadline_hours is not None \
            and not 1 <= review_deadline_hours <= MAX_REVIEW_DEADLINE_HOURS:
        raise ValueError(f"the review deadline must be 1 to {MAX_REVIEW_DEADLINE_HOURS} hours")
    if not isinstance(review_deadline_action, _Keep) and review_deadline_action not in (None, *DEADLINE_ACTIONS):
        raise ValueError("the deadline action is approve or deny")
    account = await session.scalar(select(Account).where(Account.name == account_name).with_for_update())
    if account is None:
        raise LookupError(account_name)
    wanted = {"review_deadline_hours": review_deadline_hours, "review_deadline_action": review_deadline_action,
              "auto_refund_early_fraud_warnings": auto_refund_early_fraud_warnings}
    changes = {}
    for name, value in wanted.items():
        if not isinstance(value, _Keep) and getattr(account, name) != value:
            changes[name] = (getattr(account, name), value)
            setattr(account, name, value)
    if changes:
        audit.record(session, "account.fraud_settings_changed", account_id=account.id, object_type="account",
                     object_id=account.id, changes=changes)
    return changes
