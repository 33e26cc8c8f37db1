"""Payment attempts: what happens when a PaymentIntent is confirmed, and after.

The test instrument behind the PaymentMethod decides: authorize at once
(succeeded / requires_capture), decline (402 card_error and
requires_payment_method), ask for 3-D Secure or a bank redirect
(requires_action, finished by `authenticate`), or debit later (processing,
finished by `settle`).
"""

from __future__ import annotations

from typing import Any

from .. import radar, testcards
from ..context import SYSTEM, Ctx
from ..errors import StripeError, invalid_request, resource_missing, unexpected_state
from . import charges, disputes, early_fraud_warnings, payment_methods, reviews
from .common import fetch

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


def pick_method(sim: Any, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
    if params.get("payment_method_data"):
        return payment_methods.build(sim, params["payment_method_data"])
    if params.get("payment_method"):
        return payment_methods.resolve(sim, params["payment_method"])
    if pi["payment_method"]:
        return sim.store.payment_methods.get(pi["payment_method"])
    return None


def check_method(sim: Any, pi: dict[str, Any], pm: dict[str, Any]) -> None:
    if pm["type"] not in pi["payment_method_types"]:
        raise invalid_request(
            f"The provided PaymentMethod type ({pm['type']}) is not allowed for this PaymentIntent. Please attach "
            f"a PaymentMethod of one of the following types: {', '.join(pi['payment_method_types'])}.",
            param="payment_method", code="payment_intent_incompatible_payment_method")
    if pm["customer"] is not None and pm["customer"] != pi["customer"]:
        raise invalid_request(
            f"The provided PaymentMethod belongs to a Customer ({pm['customer']}), but this PaymentIntent "
            f"{'has no Customer' if pi['customer'] is None else 'belongs to another Customer'}. Pass the "
            "PaymentMethod's Customer as `customer`.", param="payment_method")
    if pm["id"] in sim.store.consumed_pms:
        raise invalid_request(
            "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, "
            "shared with a connected account without Customer attachment, or was detached from a Customer. It "
            "may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer "
            "first.", param="payment_method")


def confirm(sim: Any, ctx: Ctx, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
    pi = fetch(sim.store.payment_intents, pi_id, "intent")
    return run_confirm(sim, pi, params, ctx)


def run_confirm(sim: Any, pi: dict[str, Any], params: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    store = sim.store
    if pi["status"] not in CONFIRMABLE:
        raise unexpected_state(
            f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}. Only a "
            "PaymentIntent with one of the following statuses may be confirmed: requires_confirmation, "
            "requires_payment_method, requires_action.", payment_intent=pi)
    pm = pick_method(sim, pi, params)
    if pm is None:
        raise unexpected_state(
            "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update "
            "the PaymentIntent with a payment method and then confirm it again, or confirm it again directly "
            "with a payment method or ConfirmationToken.", payment_intent=pi)
    check_method(sim, pi, pm)
    behaviour = store.pm_behaviour[pm["id"]]
    return_url = params.get("return_url")
    if behaviour.outcome == "redirect" and not return_url:
        raise invalid_request(f"You must provide a `return_url` when confirming a PaymentIntent with the "
                              f"payment method type {pm['type']}.", param="return_url")
    for key in ("receipt_email", "setup_future_usage", "capture_method"):
        if key in params:
            pi[key] = params[key] or None
    pi["payment_method"] = pm["id"]
    pi["last_payment_error"] = None
    off_session = bool(params.get("off_session"))
    if behaviour.outcome in ("authenticate", "redirect"):
        saved_off_session = behaviour.auth_unless_saved and off_session and pm["customer"] is not None
        if saved_off_session:
            return _authorize(sim, pi, pm, behaviour, ctx)
        if off_session:
            _decline(sim, pi, pm, testcards.AUTH_REQUIRED, ctx)
        return _require_action(sim, pi, pm, return_url, ctx)
    return _authorize(sim, pi, pm, behaviour, ctx)


def _require_action(sim: Any, pi: dict[str, Any], pm: dict[str, Any], return_url: str | None,
                    ctx: Ctx) -> dict[str, Any]:
    url = f"{sim.base_url}/_sim/redirect/{pi['id']}"
    if return_url or pm["type"] != "card":
        pi["next_action"] = {"type": "redirect_to_url", "redirect_to_url": {"return_url": return_url, "url": url}}
    else:
        pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {
            "type": "three_d_secure_redirect", "stripe_js": url, "source": sim.store.ids.new("src")}}
    pi["status"] = "requires_action"
    sim.emit("payment_intent.requires_action", pi, ctx)
    return pi


def _error_for(pi: dict[str, Any], pm: dict[str, Any], error: dict[str, Any]) -> None:
    pi["last_payment_error"] = {**error, "payment_method": pm}
    pi["status"] = "requires_payment_method"
    pi["payment_method"] = None
    pi["next_action"] = None


def _decline(sim: Any, pi: dict[str, Any], pm: dict[str, Any], decline: testcards.Decline, ctx: Ctx,
             behaviour: testcards.Behaviour | None = None) -> None:
    """Fail the attempt as Radar or the issuer would: a failed charge, then Stripe's 402 card_error."""
    charge = charges.new(sim, pi, pm, status="failed", captured=False, failure_code=decline.code,
                         failure_message=decline.message, outcome=radar.declined(decline, behaviour))
    error = {"charge": charge["id"], "code": decline.code,
             "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
             "message": decline.message, "type": "card_error"}
    if decline.decline_code:
        error["decline_code"] = decline.decline_code
    pi["latest_charge"] = charge["id"]
    _error_for(pi, pm, error)
    sim.emit("charge.failed", charge, ctx)
    sim.emit("payment_intent.payment_failed", pi, ctx)
    request_log = f"https://dashboard.stripe.com/test/logs/{ctx.request_id}" if ctx.request_id else None
    raise StripeError(402, {**error, "payment_intent": pi, "payment_method": pm, "request_log_url": request_log})


def _authorize(sim: Any, pi: dict[str, Any], pm: dict[str, Any], behaviour: testcards.Behaviour,
               ctx: Ctx) -> dict[str, Any]:
    if behaviour.outcome == "decline":
        _decline(sim, pi, pm, behaviour.decline, ctx, behaviour)
    pi["next_action"] = None
    if behaviour.outcome == "delayed":
        charge = charges.new(sim, pi, pm, status="pending", captured=True)
        pi["latest_charge"], pi["status"] = charge["id"], "processing"
        _settle_pm_usage(sim, pi, pm, ctx)
        sim.emit("charge.pending", charge, ctx)
        sim.emit("payment_intent.processing", pi, ctx)
        sim.later(sim.config.settle_delay_ms, settle, sim, pi["id"], None)
        return pi
    manual = pi["capture_method"] == "manual"
    charge = charges.new(sim, pi, pm, status="succeeded", captured=not manual,
                         outcome=radar.approved(pm["type"], behaviour))
    review = reviews.open_for(sim, pi, charge, pm) if behaviour.review else None
    pi["latest_charge"] = charge["id"]
    _settle_pm_usage(sim, pi, pm, ctx)
    sim.emit("charge.succeeded", charge, ctx)
    if manual:
        pi["status"], pi["amount_capturable"] = "requires_capture", pi["amount"]
        sim.emit("payment_intent.amount_capturable_updated", pi, ctx)
    else:
        pi["status"], pi["amount_received"] = "succeeded", pi["amount"]
        sim.emit("payment_intent.succeeded", pi, ctx)
        after_capture(sim, charge["id"], behaviour)
    if review is not None:
        sim.emit("review.opened", review, ctx)
    return pi


def after_capture(sim: Any, charge_id: str, behaviour: testcards.Behaviour) -> None:
    """What the network does later to a captured charge on some test cards: a dispute, or a fraud warning."""
    if behaviour.disputed:
        sim.later(sim.config.dispute_delay_ms, disputes.open_for, sim, charge_id, "fraudulent")
    if behaviour.early_fraud_warning:
        sim.later(sim.config.early_fraud_warning_delay_ms, early_fraud_warnings.warn_for, sim, charge_id)


def _settle_pm_usage(sim: Any, pi: dict[str, Any], pm: dict[str, Any], ctx: Ctx) -> None:
    """Save the PaymentMethod to the customer if asked; otherwise it is spent, as at Stripe."""
    if pm["customer"] is not None:
        return
    if pi["setup_future_usage"] and pi["customer"]:
        payment_methods.attach_to(sim, pm, pi["customer"], ctx)
    else:
        sim.store.consumed_pms.add(pm["id"])


def settle(sim: Any, pi_id: str, outcome: str | None) -> dict[str, Any]:
    """End the processing of a delayed debit: `outcome` forces success or failure, else the bank decides."""
    store = sim.store
    pi = store.payment_intents.get(pi_id)
    if pi is None or pi["status"] != "processing":
        return pi
    charge = store.charges.get(pi["latest_charge"])
    pm = store.payment_methods.get(charge["payment_method"])
    decline = store.pm_behaviour[pm["id"]].decline
    if outcome == "succeed":
        decline = None
    elif outcome == "fail" and decline is None:
        decline = testcards.Decline("generic_decline", None, "The payment was declined by the bank.")
    if decline is None:
        charge.update(status="succeeded", paid=True, outcome=radar.AUTHORIZED)
        pi["status"], pi["amount_received"] = "succeeded", pi["amount"]
        sim.emit("charge.succeeded", charge, SYSTEM)
        sim.emit("payment_intent.succeeded", pi, SYSTEM)
        return pi
    charge.update(status="failed", captured=False, amount_captured=0, balance_transaction=None,
                  failure_code=decline.code, failure_message=decline.message,
                  outcome={**radar.AUTHORIZED, "network_status": "declined_by_network",
                           "reason": decline.code, "type": "issuer_declined",
                           "seller_message": decline.message})
    _error_for(pi, pm, {"charge": charge["id"], "code": decline.code, "message": decline.message,
                        "type": "invalid_request_error"})
    sim.emit("charge.failed", charge, SYSTEM)
    sim.emit("payment_intent.payment_failed", pi, SYSTEM)
    return pi


def authenticate(sim: Any, pi_id: str, outcome: str) -> dict[str, Any]:
    """What the customer does on the 3-D Secure or bank redirect page: pass or fail."""
    store = sim.store
    pi = store.payment_intents.get(pi_id)
    if pi is None:
        raise resource_missing("payment_intent", pi_id, "intent")
    if pi["status"] != "requires_action":
        raise unexpected_state(f"This PaymentIntent has a status of {pi['status']}; only a PaymentIntent in "
                               "requires_action can be authenticated.", payment_intent=pi)
    pm = store.payment_methods.get(pi["payment_method"])
    if outcome == "succeed":
        behaviour = store.pm_behaviour[pm["id"]]
        try:
            return _authorize(sim, pi, pm, testcards.Behaviour(disputed=behaviour.disputed)
                              if behaviour.outcome in ("authenticate", "redirect") else behaviour, SYSTEM)
        except StripeError:
            return pi  # a decline after authentication leaves the PI in requires_payment_method
    _error_for(pi, pm, {
        "code": "payment_intent_authentication_failure",
        "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
        "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
                   "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
        "type": "invalid_request_error"})
    sim.emit("payment_intent.payment_failed", pi, SYSTEM)
    return pi
