"""Charges: the payment attempts behind a PaymentIntent.

paymentd never creates charges directly; they appear as a PaymentIntent's
`latest_charge`, in events and in refunds, and can be retrieved and listed.
"""

from __future__ import annotations

from typing import Any

from .. import radar
from ..context import Ctx, now
from .common import fetch, list_page

# Shared by every card charge: nested dicts are replaced, never mutated in place.
_CARD_FIXED = {
    "authorization_code": "123456", "extended_authorization": {"status": "disabled"},
    "incremental_authorization": {"status": "unavailable"}, "installments": None, "mandate": None,
    "multicapture": {"status": "unavailable"}, "network_token": {"used": False},
    "network_transaction_id": "123456789012345", "three_d_secure": None,
}


def _method_details(pi: dict[str, Any], pm: dict[str, Any], created: int) -> dict[str, Any]:
    pm_type = pm["type"]
    given = pm[pm_type]
    if pm_type == "card":
        details = {key: given[key] for key in ("brand", "checks", "country", "exp_month", "exp_year",
                                                "fingerprint", "funding", "last4", "regulated_status", "wallet")}
        details.update(_CARD_FIXED)
        details.update({
            "amount_authorized": pi["amount"], "capture_before": created + 7 * 86400, "network": given["brand"],
            "overcapture": {"maximum_amount_capturable": pi["amount"], "status": "unavailable"},
        })
    elif pm_type == "sepa_debit":
        details = {key: given[key] for key in ("bank_code", "branch_code", "country", "fingerprint", "last4")}
        details["mandate"] = None
    elif pm_type == "us_bank_account":
        details = {key: given[key] for key in ("account_holder_type", "account_type", "bank_name",
                                                "fingerprint", "last4", "routing_number")}
        details.update({"mandate": None, "payment_reference": None})
    elif pm_type == "ideal":
        details = {"bank": given["bank"], "bic": None, "generated_sepa_debit": None,
                   "generated_sepa_debit_mandate": None, "iban_last4": "5264", "transaction_id": None,
                   "verified_name": "Jenny Rosen"}
    else:
        details = {"bank_code": "VAPE", "bank_name": "VAN DE PUT & CO", "bic": "VAPEBE22",
                   "generated_sepa_debit": None, "generated_sepa_debit_mandate": None, "iban_last4": "7061",
                   "preferred_language": "en", "verified_name": "Jenny Rosen"}
    return {"type": pm_type, pm_type: details}


def new(sim: Any, pi: dict[str, Any], pm: dict[str, Any], *, status: str, captured: bool,
        failure_code: str | None = None, failure_message: str | None = None,
        outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record one payment attempt for `pi` with `pm`: succeeded, pending or failed, with Radar's `outcome`."""
    store = sim.store
    charge_id = store.ids.new("ch")
    created = now()
    charge = {
        "id": charge_id,
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"] if captured and status != "failed" else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": store.ids.new("txn") if status != "failed" and captured else None,
        "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": "STRIPE SIM",
        "captured": captured and status != "failed",
        "created": created,
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": radar.BLOCKED_FRAUD_DETAILS if radar.is_blocked(outcome) else {},
        "livemode": False,
        "metadata": pi["metadata"],
        "on_behalf_of": None,
        "outcome": None if status == "pending" else outcome,
        "paid": status == "succeeded",
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": _method_details(pi, pm, created),
        "radar_options": {},
        "receipt_email": pi["receipt_email"],
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/{charge_id}",
        "refunded": False,
        "review": None,
        "shipping": pi["shipping"],
        "source_transfer": None,
        "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    return store.charges.add(charge, pi["id"], pi["customer"])


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], charge_id: str) -> dict[str, Any]:
    return fetch(sim.store.charges, charge_id, "charge")


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    owner = params.get("payment_intent") or params.get("customer")
    keep = None
    if params.get("payment_intent") and params.get("customer"):
        keep = lambda ch: ch["customer"] == params["customer"]
    return list_page(sim.store.charges, params, "/v1/charges", owner=owner, keep=keep)
