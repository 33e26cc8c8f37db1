"""Refunds: full or partial, never more than what was captured and not yet refunded.

Card refunds succeed at once; bank debit refunds are pending, then succeed;
refunds on test card 4000000000005126 succeed, then fail later with a
`refund.failed` event, the way Stripe's test mode behaves.
"""

from __future__ import annotations

from typing import Any

from ..context import SYSTEM, Ctx, now
from ..errors import invalid_request
from . import early_fraud_warnings, reviews
from .common import fetch, list_page, merged_metadata, money


def _charge_for(sim: Any, params: dict[str, Any]) -> dict[str, Any]:
    store = sim.store
    if params.get("charge"):
        charge = fetch(store.charges, params["charge"], "charge")
        if params.get("payment_intent") and params["payment_intent"] != charge["payment_intent"]:
            raise invalid_request("The charge does not belong to the given payment_intent.", param="charge")
        return charge
    pi_id = params.get("payment_intent")
    if not pi_id:
        raise invalid_request("One of the following params should be provided for this request: payment_intent "
                              "or charge.", param="payment_intent", code="parameter_missing")
    pi = fetch(store.payment_intents, pi_id, "payment_intent")
    if pi["status"] != "succeeded":
        raise invalid_request(f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                              param="payment_intent", code="charge_not_refundable")
    return store.charges.get(pi["latest_charge"])


def create(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    store = sim.store
    charge = _charge_for(sim, params)
    charge_id = charge["id"]
    if charge["status"] != "succeeded" or not charge["captured"]:
        raise invalid_request(f"Charge {charge_id} has not been captured or has failed; it cannot be refunded.",
                              param="charge", code="charge_not_refundable")
    if charge["disputed"]:
        raise invalid_request(f"Charge {charge_id} has been charged back; cannot issue a refund.",
                              code="charge_disputed")
    refundable = charge["amount"] - charge["amount_refunded"]
    if refundable <= 0:
        raise invalid_request(f"Charge {charge_id} has already been refunded.", code="charge_already_refunded")
    amount = params.get("amount", refundable)
    if amount < 1:
        raise invalid_request("Invalid positive integer", param="amount", code="parameter_invalid_integer")
    if amount > refundable:
        currency = charge["currency"]
        raise invalid_request(f"Refund amount ({money(amount, currency, False)}) is greater than unrefunded "
                              f"amount on charge ({money(refundable, currency, False)})", param="amount",
                              code="amount_too_large")
    behaviour = store.pm_behaviour[charge["payment_method"]]
    pending = behaviour.outcome == "delayed"
    refund = {
        "id": store.ids.new("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": store.ids.new("txn"),
        "charge": charge_id,
        "created": now(),
        "currency": charge["currency"],
        "metadata": merged_metadata({}, params.get("metadata") or {}),
        "payment_intent": charge["payment_intent"],
        "reason": params.get("reason"),
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "pending" if pending else "succeeded",
        "transfer_reversal": None,
    }
    store.refunds.add(refund, charge_id, charge["payment_intent"])
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    sim.emit("refund.created", refund, ctx)
    sim.emit("charge.refunded", charge, ctx, previous)
    if charge["refunded"]:
        # A full refund settles the matter: Stripe closes the review and the warnings stop being actionable.
        reason = "refunded_as_fraud" if refund["reason"] == "fraudulent" else "refunded"
        reviews.close_for_charge(sim, charge, reason, ctx)
        early_fraud_warnings.refresh_for_charge(sim, charge, ctx)
    if pending:
        sim.later(sim.config.settle_delay_ms, settle, sim, refund["id"])
    elif behaviour.refund_fails:
        sim.later(sim.config.refund_fail_delay_ms, _fail_unless_settled, sim, refund["id"])
    return refund


def settle(sim: Any, refund_id: str) -> None:
    """A pending bank refund goes through."""
    refund = sim.store.refunds.get(refund_id)
    if refund is not None and refund["status"] == "pending":
        refund["status"] = "succeeded"
        sim.emit("refund.updated", refund, SYSTEM, {"status": "pending"})
        sim.emit("charge.refund.updated", refund, SYSTEM, {"status": "pending"})


def _fail_unless_settled(sim: Any, refund_id: str) -> None:
    # The failure may already have been forced through /_sim/refunds/{id}/fail.
    refund = sim.store.refunds.get(refund_id)
    if refund is not None and refund["status"] == "succeeded":
        fail(sim, refund_id)


def fail(sim: Any, refund_id: str) -> dict[str, Any]:
    """The refund cannot reach the customer: it fails and the money returns to the merchant."""
    store = sim.store
    refund = fetch(store.refunds, refund_id, "refund")
    if refund["status"] not in ("succeeded", "pending"):
        raise invalid_request(f"Refund {refund_id} has status {refund['status']} and cannot fail.",
                              param="refund")
    previous_status = refund["status"]
    refund.update(status="failed", failure_reason="expired_or_canceled_card",
                  failure_balance_transaction=store.ids.new("txn"))
    charge = store.charges.get(refund["charge"])
    charge["amount_refunded"] -= refund["amount"]
    charge["refunded"] = False
    sim.emit("refund.failed", refund, SYSTEM, {"status": previous_status})
    sim.emit("refund.updated", refund, SYSTEM, {"status": previous_status})
    sim.emit("charge.refund.updated", refund, SYSTEM, {"status": previous_status})
    return refund


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], refund_id: str) -> dict[str, Any]:
    return fetch(sim.store.refunds, refund_id, "refund")


def update(sim: Any, ctx: Ctx, params: dict[str, Any], refund_id: str) -> dict[str, Any]:
    refund = fetch(sim.store.refunds, refund_id, "refund")
    if "metadata" in params:
        previous = {"metadata": refund["metadata"]}
        refund["metadata"] = merged_metadata(refund["metadata"], params["metadata"])
        sim.emit("refund.updated", refund, ctx, previous)
    return refund


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    owner = params.get("charge") or params.get("payment_intent")
    return list_page(sim.store.refunds, params, "/v1/refunds", owner=owner)
