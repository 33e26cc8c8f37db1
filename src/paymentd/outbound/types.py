"""The event types a merchant can subscribe to (API.md), and which payment status
move each payment event reports."""

from __future__ import annotations

# Payment status -> the event its arrival is reported as (requires_payment_method is
# reached only by a decline or an abandoned confirmation: `payment.failed`).
PAYMENT_MOVES = {
    "requires_action": "payment.requires_action",
    "processing": "payment.processing",
    "requires_capture": "payment.requires_capture",
    "succeeded": "payment.succeeded",
    "requires_payment_method": "payment.failed",
    "canceled": "payment.canceled",
    "partially_refunded": "payment.partially_refunded",
    "refunded": "payment.refunded",
    "disputed": "payment.disputed",
}

# Refund status -> event (`refund.canceled` is an addition to API.md's list).
REFUND_MOVES = {"succeeded": "refund.succeeded", "failed": "refund.failed", "canceled": "refund.canceled"}

EVENT_TYPES = frozenset({
    "payment.created", *PAYMENT_MOVES.values(),
    "refund.created", *REFUND_MOVES.values(),
    "dispute.created", "dispute.closed",
    # Emitted by the fraud code (fraud/reviews.py, fraud/events.py).
    "review.opened", "review.closed", "early_fraud_warning.created",
})


def payment_event_type(from_status: str | None, to_status: str) -> str | None:
    """The event a payment's move reports; None for a move merchants are not told of
    (to requires_confirmation, say)."""
    if from_status is None:
        return "payment.created"
    return PAYMENT_MOVES.get(to_status)
