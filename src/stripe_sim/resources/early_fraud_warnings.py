"""Early fraud warnings: the issuer's notice that a captured charge looks fraudulent.

Stripe sends them on its own (test card 4000000000005423, after the charge is
captured) and the simulator also raises them on demand from
`/_sim/charges/{id}/early_fraud_warning`. A warning is `actionable` until its
charge is fully refunded or disputed; that change is `radar.early_fraud_warning.updated`.
"""

from __future__ import annotations

from typing import Any

from ..context import SYSTEM, Ctx, now
from ..errors import invalid_request
from .common import fetch, list_page

FRAUD_TYPES = ("card_never_received", "fraudulent_card_application", "made_with_counterfeit_card",
               "made_with_lost_card", "made_with_stolen_card", "misc", "unauthorized_use_of_card")


def _actionable(charge: dict[str, Any]) -> bool:
    return not charge["disputed"] and not charge["refunded"]


def warn_for(sim: Any, charge_id: str, fraud_type: str = "misc") -> dict[str, Any]:
    """The issuer reports a captured charge as fraud: record the warning and emit `.created`."""
    store = sim.store
    charge = fetch(store.charges, charge_id, "charge")
    if not charge["captured"]:
        raise invalid_request(f"Charge {charge_id} has not been captured; issuers warn only about captured "
                              "charges.", param="charge")
    if fraud_type not in FRAUD_TYPES:
        raise invalid_request(f"Invalid fraud_type: must be one of {', '.join(FRAUD_TYPES)}", param="fraud_type")
    warning = {
        "id": store.ids.new("issfr"),
        "object": "radar.early_fraud_warning",
        "actionable": _actionable(charge),
        "charge": charge_id,
        "created": now(),
        "fraud_type": fraud_type,
        "livemode": False,
        "payment_intent": charge["payment_intent"],
    }
    store.early_fraud_warnings.add(warning, charge_id, charge["payment_intent"])
    sim.emit("radar.early_fraud_warning.created", warning, SYSTEM)
    return warning


def refresh_for_charge(sim: Any, charge: dict[str, Any], ctx: Ctx) -> None:
    """After a refund or a dispute: warnings whose charge is now settled stop being actionable."""
    store = sim.store
    index = store.early_fraud_warnings.by_owner.get(charge["id"])
    if index is None or _actionable(charge):
        return
    for warning_id in list(index.newest_first(None, None)):
        warning = store.early_fraud_warnings.get(warning_id)
        if warning["actionable"]:
            warning["actionable"] = False
            sim.emit("radar.early_fraud_warning.updated", warning, ctx, {"actionable": True})


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], warning_id: str) -> dict[str, Any]:
    return fetch(sim.store.early_fraud_warnings, warning_id, "early_fraud_warning")


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    charge, pi = params.get("charge"), params.get("payment_intent")
    keep = (lambda w: w["payment_intent"] == pi) if charge and pi else None
    return list_page(sim.store.early_fraud_warnings, params, "/v1/radar/early_fraud_warnings",
                     owner=charge or pi, keep=keep)
