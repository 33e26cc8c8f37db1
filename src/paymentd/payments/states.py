r"""The payment state machine: statuses and the only moves allowed between them.

Nothing else in paymentd assigns a payment status without asking ``transition()``,
so API calls, webhooks (unordered, repeated) and the reconciler can never drive a
payment backwards or somewhere impossible. This module imports nothing of paymentd.

The graph (Stripe's PaymentIntent lifecycle, plus paymentd's refund and dispute
states, which Stripe keeps on the Charge rather than on the PaymentIntent)::

    CHARGE ATTEMPT (a decline starts a new attempt on the same payment)

                              attach method
        requires_payment_method ---------> requires_confirmation
            ^         |                             |
            |         +--------- confirm -----------+
            |                       |
            |                       v
            |      +-------------------------------------+
            |      |  requires_action     processing     |  what a confirm
            |      |  requires_capture    succeeded      |  can lead to
            |      +-------------------------------------+
            |        requires_action  --> processing | requires_capture | succeeded
            |        processing       --> requires_action | requires_capture | succeeded
            |        requires_capture --> processing | succeeded
            |                       |
            +--- decline / failed authentication
                 (from requires_confirmation, requires_action, processing)

        canceled (terminal) <-- requires_payment_method, requires_confirmation,
                                requires_action, processing, requires_capture

    AFTER THE CHARGE

        succeeded ----------- full refund ---------> refunded
            |   \                                  ^   |
            |    +--> partially_refunded --------+    |
            |               |                          |
            +---------------+--------------------------+--> disputed
                                                              | won / withdrawn
                                                              v
                                      succeeded | partially_refunded | refunded

Every move, as a table (a unit test checks it against ``ALLOWED_MOVES``)::

    requires_payment_method -> requires_confirmation requires_action processing requires_capture succeeded canceled
    requires_confirmation   -> requires_payment_method requires_action processing requires_capture succeeded canceled
    requires_action         -> requires_payment_method processing requires_capture succeeded canceled
    processing              -> requires_payment_method requires_action requires_capture succeeded canceled
    requires_capture        -> processing succeeded canceled
    succeeded               -> partially_refunded refunded disputed
    partially_refunded      -> refunded disputed succeeded
    refunded                -> disputed partially_refunded succeeded
    disputed                -> succeeded partially_refunded refunded
    canceled                ->

The moves, and why each exists:

* requires_payment_method -> requires_confirmation: a payment method was attached
  without confirming (create with ``payment_method``).
* requires_payment_method | requires_confirmation -> requires_action | processing |
  requires_capture | succeeded: a confirm. ``requires_action`` means 3-D Secure or a
  redirect is needed; ``processing`` an asynchronous method, or our call to Stripe
  still in flight past the response budget; ``requires_capture`` a manual-capture
  authorization; ``succeeded`` money captured.
* requires_confirmation | requires_action | processing -> requires_payment_method: a
  decline or failed authentication. The attempt is over; the payment may be
  confirmed again with another method (API.md).
* requires_action -> processing | requires_capture | succeeded: the customer
  completed the action; -> canceled: the merchant gave up.
* processing -> succeeded | requires_capture | requires_payment_method: the
  asynchronous outcome. processing -> requires_action: paymentd also shows
  ``processing`` while its own confirm call to Stripe is unanswered (API.md's 202),
  and Stripe's eventual answer can be "needs 3-D Secure". processing -> canceled:
  Stripe allows cancelling a processing PaymentIntent only "in rare cases" (some
  asynchronous methods), and an authorization that expires while a capture is in
  flight ends canceled too; when Stripe says so, the record must follow.
* requires_capture -> succeeded (captured, fully or partially; the rest is
  released) | canceled (cancelled, or the authorization expired) | processing
  (paymentd's capture call in flight, or an asynchronous capture).
* succeeded -> partially_refunded | refunded: refunds. partially_refunded ->
  refunded: the last of the money refunded (more partial refunds are no-ops on the
  status). succeeded | partially_refunded -> disputed: a chargeback was opened.
* partially_refunded -> succeeded, refunded -> partially_refunded | succeeded: a
  refund Stripe had accepted failed later (``refund.failed``, e.g. the card was
  closed); its amount is refundable again and the status follows what remains.
  These are the only moves "backwards", and only a failed refund makes them.
* refunded -> disputed: a cardholder can still open a dispute on a refunded
  charge (often before they notice the refund); Stripe accepts such disputes and
  the merchant must answer them, so paymentd must show them.
* disputed -> succeeded | partially_refunded | refunded: the dispute closed in the
  merchant's favour (won, or withdrawn by the cardholder), so the payment returns
  to the status its refunds imply. A lost dispute stays ``disputed``: that is
  final for the money, and no move leaves it except through a later status update
  the provider reports. Stripe refuses refunds on a disputed charge, so there is
  no refund move out of ``disputed`` except via dispute closure.
* canceled is terminal: Stripe never revives a canceled PaymentIntent.

A move to the same status is not a move: ``transition(s, s)`` raises. Callers
applying possibly repeated updates (webhooks, the reconciler) check ``is_noop``
first and then skip, rather than treating the repeat as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "PaymentStatus",
    "ALLOWED_MOVES",
    "TERMINAL",
    "CHARGE_FINAL",
    "InvalidTransition",
    "transition",
    "can_move",
    "is_noop",
    "is_final_for_charge",
]


class PaymentStatus(StrEnum):
    # Member names equal their values (PaymentStatus.succeeded == "succeeded"), so
    # code, database rows and API strings all read the same.
    requires_payment_method = "requires_payment_method"
    requires_confirmation = "requires_confirmation"
    requires_action = "requires_action"
    processing = "processing"
    requires_capture = "requires_capture"
    succeeded = "succeeded"
    partially_refunded = "partially_refunded"
    refunded = "refunded"
    canceled = "canceled"
    disputed = "disputed"


_S = PaymentStatus

ALLOWED_MOVES: Mapping[PaymentStatus, frozenset[PaymentStatus]] = MappingProxyType(
    {
        _S.requires_payment_method: frozenset(
            {
                _S.requires_confirmation,
                _S.requires_action,
                _S.processing,
                _S.requires_capture,
                _S.succeeded,
                _S.canceled,
            }
        ),
        _S.requires_confirmation: frozenset(
            {
                _S.requires_payment_method,
                _S.requires_action,
                _S.processing,
                _S.requires_capture,
                _S.succeeded,
                _S.canceled,
            }
        ),
        _S.requires_action: frozenset(
            {
                _S.requires_payment_method,
                _S.processing,
                _S.requires_capture,
                _S.succeeded,
                _S.canceled,
            }
        ),
        _S.processing: frozenset(
            {
                _S.requires_payment_method,
                _S.requires_action,
                _S.requires_capture,
                _S.succeeded,
                _S.canceled,
            }
        ),
        _S.requires_capture: frozenset({_S.processing, _S.succeeded, _S.canceled}),
        _S.succeeded: frozenset({_S.partially_refunded, _S.refunded, _S.disputed}),
        _S.partially_refunded: frozenset({_S.refunded, _S.disputed, _S.succeeded}),
        _S.refunded: frozenset({_S.disputed, _S.partially_refunded, _S.succeeded}),
        _S.disputed: frozenset({_S.succeeded, _S.partially_refunded, _S.refunded}),
        _S.canceled: frozenset(),
    }
)

# No move leaves these.
TERMINAL: frozenset[PaymentStatus] = frozenset(s for s, moves in ALLOWED_MOVES.items() if not moves)

# The charge itself is settled (captured or abandoned): only refunds and disputes
# can follow. Receipts exist from here; the reconciler stops asking Stripe about
# the charge attempt.
CHARGE_FINAL: frozenset[PaymentStatus] = frozenset(
    {_S.succeeded, _S.partially_refunded, _S.refunded, _S.disputed, _S.canceled}
)


class InvalidTransition(Exception):
    """A status change the graph does not allow (the API answers 409 invalid_state)."""

    def __init__(self, current: PaymentStatus, target: PaymentStatus) -> None:
        self.current = current
        self.target = target
        super().__init__(f"a payment cannot move from {current} to {target}")


def _status(value: PaymentStatus | str) -> PaymentStatus:
    # Accept the plain strings stored in the database; an unknown one is a bug
    # (ValueError), not a refused move.
    return value if isinstance(value, PaymentStatus) else PaymentStatus(value)


def can_move(current: PaymentStatus | str, target: PaymentStatus | str) -> bool:
    """True if ``current -> target`` is an allowed move (never for current == target)."""
    return _status(target) in ALLOWED_MOVES[_status(current)]


def is_noop(current: PaymentStatus | str, target: PaymentStatus | str) -> bool:
    """True if the update would leave the status as it is (a repeat, not a move)."""
    return _status(current) is _status(target)


def transition(current: PaymentStatus | str, target: PaymentStatus | str) -> PaymentStatus:
    """Return ``target`` if ``current -> target`` is allowed, else raise InvalidTransition."""
    cur, tgt = _status(current), _status(target)
    if tgt not in ALLOWED_MOVES[cur]:
        raise InvalidTransition(cur, tgt)
    return tgt


def is_final_for_charge(status: PaymentStatus | str) -> bool:
    """True once the charge is captured or abandoned; only refunds/disputes may follow."""
    return _status(status) in CHARGE_FINAL
