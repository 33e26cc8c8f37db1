"""Disputes (chargebacks): opened by the card network, closed as won or lost.

Stripe opens them by itself (test card 4000000000000259) and the simulator
also opens them on demand from `/_sim/charges/{id}/dispute`, so paymentd's
dispute handling can be driven from tests.
"""

from __future__ import annotations

from typing import Any

from ..context import SYSTEM, Ctx, now
from ..errors import invalid_request
from . import early_fraud_warnings, reviews
from .common import fetch, list_page, merged_metadata

_EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation",
    "duplicate_charge_explanation", "duplicate_charge_id", "product_description", "receipt", "refund_policy",
    "refund_policy_disclosure", "refund_refusal_explanation", "service_date", "service_documentation",
    "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation",
    "shipping_tracking_number", "uncategorized_file", "uncategorized_text",
)
_EMPTY_EVIDENCE = dict.fromkeys(_EVIDENCE_FIELDS)
REASONS = ("bank_cannot_process", "credit_not_processed", "customer_initiated", "debit_not_authorized",
           "duplicate", "fraudulent", "general", "incorrect_account_details", "insufficient_funds",
           "product_not_received", "product_unacceptable", "subscription_canceled", "unrecognized")


def open_for(sim: Any, charge_id: str, reason: str, amount: int | None = None) -> dict[str, Any]:
    """The cardholder's bank disputes a captured charge; funds are withdrawn at once."""
    store = sim.store
    charge = fetch(store.charges, charge_id, "charge")
    if not charge["captured"] or charge["disputed"]:
        raise invalid_request(f"Charge {charge_id} cannot be disputed (not captured, or already disputed).",
                              param="charge")
    if reason not in REASONS:
        raise invalid_request(f"Invalid reason: must be one of {', '.join(REASONS)}", param="reason")
    created = now()
    dispute = {
        "id": store.ids.new("du"),
        "object": "dispute",
        "amount": amount or charge["amount_captured"],
        "balance_transactions": [],
        "charge": charge_id,
        "created": created,
        "currency": charge["currency"],
        "evidence": _EMPTY_EVIDENCE,
        "evidence_details": {"due_by": created + 7 * 86400, "has_evidence": False, "past_due": False,
                             "submission_count": 0},
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "status": "needs_response",
    }
    store.disputes.add(dispute, charge_id)
    charge["disputed"] = True
    sim.emit("charge.dispute.created", dispute, SYSTEM)
    sim.emit("charge.dispute.funds_withdrawn", dispute, SYSTEM)
    reviews.close_for_charge(sim, charge, "disputed", SYSTEM)
    early_fraud_warnings.refresh_for_charge(sim, charge, SYSTEM)
    return dispute


def resolve(sim: Any, dispute_id: str, outcome: str, ctx: Ctx = SYSTEM) -> dict[str, Any]:
    """Close a dispute as `won` or `lost` (what the card network decides after evidence)."""
    dispute = fetch(sim.store.disputes, dispute_id, "dispute")
    if dispute["status"] in ("won", "lost"):
        raise invalid_request(f"Dispute {dispute_id} is already closed ({dispute['status']}).", param="dispute")
    if outcome not in ("won", "lost"):
        raise invalid_request("outcome must be 'won' or 'lost'", param="outcome")
    dispute["status"] = outcome
    sim.emit("charge.dispute.closed", dispute, ctx)
    if outcome == "won":
        sim.emit("charge.dispute.funds_reinstated", dispute, ctx)
    return dispute


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], dispute_id: str) -> dict[str, Any]:
    return fetch(sim.store.disputes, dispute_id, "dispute")


def close(sim: Any, ctx: Ctx, params: dict[str, Any], dispute_id: str) -> dict[str, Any]:
    """The merchant accepts the dispute: Stripe marks it lost."""
    dispute = fetch(sim.store.disputes, dispute_id, "dispute")
    if "metadata" in params:
        dispute["metadata"] = merged_metadata(dispute["metadata"], params["metadata"])
    return resolve(sim, dispute_id, "lost", ctx)


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    owner = params.get("charge")
    wanted_pi = params.get("payment_intent")
    keep = (lambda d: d["payment_intent"] == wanted_pi) if wanted_pi else None
    return list_page(sim.store.disputes, params, "/v1/disputes", owner=owner, keep=keep)
