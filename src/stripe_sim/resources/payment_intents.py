"""PaymentIntents: create, update, capture, cancel, list, and the checks Stripe makes on them.

Stripe's status machine: requires_payment_method -> requires_confirmation ->
(requires_action) -> processing | requires_capture | succeeded, or canceled.
What a confirmation does is in `attempts.py`; this module owns amounts,
currencies, allowed method types, capture and cancellation.
"""

from __future__ import annotations

from typing import Any

from ..context import Ctx, now
from ..errors import invalid_request, unexpected_state
from . import attempts, reviews
from .attempts import CONFIRMABLE
from .common import fetch, list_page, merged_metadata, money

# Minimum charge amounts in the smallest currency unit (Stripe's published table).
MINIMUMS = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500, "dkk": 250,
    "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200,
    "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}
# Every other currency Stripe presents cards in. Stripe checks their minimum by
# converting to the account's settlement currency; the simulator has no rates,
# so for these it only asks for a positive amount.
OTHER_CURRENCIES = frozenset(
    "afn all amd ang aoa ars awg azn bam bbd bdt bhd bif bmd bnd bob bsd bwp byn bzd cdf clp cny cop crc "
    "cve djf dop dzd egp etb fjd fkp gel gip gmd gnf gtq gyd hnl htg idr ils isk jmd jod kes kgs khr kmf "
    "krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mzn nad ngn nio npr omr "
    "pab pen pgk php pkr pyg qar rsd rub rwf sar sbd scr shp sle sos srd std szl tjs tnd top try ttd twd "
    "tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw".split()
)
SUPPORTED_CURRENCIES = frozenset(MINIMUMS) | OTHER_CURRENCIES
MAX_AMOUNT = 99_999_999

# Which currencies each non-card method accepts, and its default payment_method_options.
METHOD_CURRENCIES = {"sepa_debit": {"eur"}, "ideal": {"eur"}, "bancontact": {"eur"}, "us_bank_account": {"usd"}}
METHOD_OPTIONS = {
    "card": {"installments": None, "mandate_options": None, "network": None, "request_three_d_secure": "automatic"},
    "sepa_debit": {}, "ideal": {}, "bancontact": {"preferred_language": "en"},
    "us_bank_account": {"verification_method": "automatic"},
}
_NO_TIP: dict[str, Any] = {"tip": {}}  # shared: nested dicts are replaced, never mutated
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")


def _check_amount(amount: int, currency: str, param: str = "amount") -> None:
    minimum = MINIMUMS.get(currency, 1)
    if amount < minimum:
        raise invalid_request(f"Amount must be at least {money(minimum, currency)}", param=param,
                              code="amount_too_small")
    if amount > MAX_AMOUNT:
        raise invalid_request(f"Amount must be no more than {money(MAX_AMOUNT, currency)}", param=param,
                              code="amount_too_large")


def _check_currency(currency: str) -> str:
    currency = currency.lower()
    if currency not in SUPPORTED_CURRENCIES:
        raise invalid_request(f"Invalid currency: {currency}. Stripe currently supports these currencies: "
                              + ", ".join(sorted(SUPPORTED_CURRENCIES)), param="currency")
    return currency


def _method_types(params: dict[str, Any], currency: str) -> tuple[list[str], dict[str, Any] | None]:
    """payment_method_types and automatic_payment_methods, as Stripe derives them."""
    given = params.get("payment_method_types")
    if not given:
        # No explicit types: Stripe turns on automatic payment methods (the Dashboard's set).
        types = ["card"] + sorted(t for t, cur in METHOD_CURRENCIES.items() if currency in cur)
        apm = params.get("automatic_payment_methods") or {"enabled": True}
        return types, {"allow_redirects": apm.get("allow_redirects", "always"), "enabled": apm["enabled"]}
    for i, pm_type in enumerate(given):
        if pm_type not in METHOD_OPTIONS:
            raise invalid_request(f"The payment method type \"{pm_type}\" is invalid. Please ensure the provided "
                                  "type is activated in your dashboard (https://dashboard.stripe.com/account/"
                                  "payments/settings) and your account is enabled for any preview features that "
                                  "you are trying to use.", param=f"payment_method_types[{i}]")
        if currency not in METHOD_CURRENCIES.get(pm_type, {currency}):
            allowed = ", ".join(sorted(METHOD_CURRENCIES[pm_type]))
            raise invalid_request(f"The currency provided ({currency}) is invalid. Payments with {pm_type} "
                                  f"support the following currencies: {allowed}.", param="currency",
                                  code="payment_intent_invalid_parameter")
    return list(given), None


def _method_options(types: list[str], given: dict[str, Any] | None) -> dict[str, Any]:
    given = given or {}
    return {t: {**METHOD_OPTIONS[t], **given.get(t, {})} if t in given else METHOD_OPTIONS[t] for t in types}


def _new_pi(sim: Any, params: dict[str, Any], currency: str) -> dict[str, Any]:
    store = sim.store
    pi_id = store.ids.new("pi")
    types, apm = _method_types(params, currency)
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": params["amount"],
        "amount_capturable": 0,
        "amount_details": _NO_TIP,
        "amount_received": 0,
        "application": None,
        "application_fee_amount": params.get("application_fee_amount"),
        "automatic_payment_methods": apm,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": params.get("capture_method", "automatic_async"),
        "client_secret": f"{pi_id}_secret_{store.ids.token(25)}",
        "confirmation_method": params.get("confirmation_method", "automatic"),
        "created": now(),
        "currency": currency,
        "customer": params.get("customer"),
        "description": params.get("description"),
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": merged_metadata({}, params.get("metadata") or {}),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": _method_options(types, params.get("payment_method_options")),
        "payment_method_types": types,
        "processing": None,
        "receipt_email": params.get("receipt_email"),
        "review": None,
        "setup_future_usage": params.get("setup_future_usage"),
        "shipping": None,
        "source": None,
        "statement_descriptor": params.get("statement_descriptor"),
        "statement_descriptor_suffix": params.get("statement_descriptor_suffix"),
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": params.get("transfer_group"),
    }


def create(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    store = sim.store
    currency = _check_currency(params["currency"])
    _check_amount(params["amount"], currency)
    if params.get("customer"):
        fetch(store.customers, params["customer"], "customer")
    if params.get("off_session") is not None and not params.get("confirm"):
        raise invalid_request("You may only specify `off_session` when `confirm=true`.", param="off_session")
    pi = _new_pi(sim, params, currency)
    pm = attempts.pick_method(sim, pi, params)
    if pm is not None:
        attempts.check_method(sim, pi, pm)
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    store.payment_intents.add(pi, pi["customer"])
    sim.emit("payment_intent.created", pi, ctx)
    if params.get("confirm"):
        return attempts.run_confirm(sim, pi, params, ctx)
    return pi


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
    return fetch(sim.store.payment_intents, pi_id, "intent")


_STATUS_LOCKED = ("amount", "currency", "payment_method", "payment_method_types", "capture_method", "customer")


def update(sim: Any, ctx: Ctx, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
    store = sim.store
    pi = fetch(store.payment_intents, pi_id, "intent")
    locked = [key for key in _STATUS_LOCKED if key in params]
    if locked and pi["status"] not in CONFIRMABLE:
        raise unexpected_state(
            f"This PaymentIntent's {locked[0]} could not be updated because it has a status of {pi['status']}. "
            "You may only update the " + locked[0] + " of a PaymentIntent with one of the following statuses: "
            + ", ".join(CONFIRMABLE) + ".", param=locked[0], payment_intent=pi)
    currency = _check_currency(params["currency"]) if "currency" in params else pi["currency"]
    if "amount" in params or "currency" in params:
        _check_amount(params.get("amount", pi["amount"]), currency)
        pi["amount"], pi["currency"] = params.get("amount", pi["amount"]), currency
    if "customer" in params:
        if params["customer"]:
            fetch(store.customers, params["customer"], "customer")
        pi["customer"] = params["customer"] or None
        if pi["customer"]:
            store.payment_intents.by_owner[pi["customer"]].add(pi_id)
    if "payment_method_types" in params:
        types, apm = _method_types(params, currency)
        pi["payment_method_types"], pi["automatic_payment_methods"] = types, apm
        pi["payment_method_options"] = _method_options(types, params.get("payment_method_options"))
    for key in ("description", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
                "setup_future_usage", "capture_method", "transfer_group"):
        if key in params:
            pi[key] = params[key] or None
    if "metadata" in params:
        pi["metadata"] = merged_metadata(pi["metadata"], params["metadata"])
    if "payment_method" in params or "payment_method_data" in params:
        pm = attempts.pick_method(sim, pi, params)
        if pm is not None:
            attempts.check_method(sim, pi, pm)
        pi["payment_method"] = pm["id"] if pm else None
    if locked and pi["status"] in CONFIRMABLE:
        # Changing what is paid or how puts the PaymentIntent back before confirmation.
        pi["status"] = "requires_confirmation" if pi["payment_method"] else "requires_payment_method"
        pi["next_action"] = None
    return pi


def capture(sim: Any, ctx: Ctx, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
    store = sim.store
    pi = fetch(store.payment_intents, pi_id, "intent")
    if pi["status"] != "requires_capture":
        raise unexpected_state(
            f"This PaymentIntent could not be captured because it has a status of {pi['status']}. Only a "
            "PaymentIntent with one of the following statuses may be captured: requires_capture.",
            payment_intent=pi)
    amount = params.get("amount_to_capture", pi["amount_capturable"])
    if amount > pi["amount_capturable"]:
        raise invalid_request("The amount to capture must be less than or equal to the amount capturable "
                              f"({pi['amount_capturable']}).", param="amount_to_capture", code="amount_too_large")
    if amount < 1:
        raise invalid_request("The amount to capture must be positive.", param="amount_to_capture")
    if "metadata" in params:
        pi["metadata"] = merged_metadata(pi["metadata"], params["metadata"])
    charge = store.charges.get(pi["latest_charge"])
    # Stripe releases the uncaptured remainder, which shows as refunded on the charge.
    charge.update(captured=True, amount_captured=amount, amount_refunded=charge["amount"] - amount,
                  balance_transaction=store.ids.new("txn"))
    pi["status"], pi["amount_received"], pi["amount_capturable"] = "succeeded", amount, 0
    sim.emit("charge.captured", charge, ctx)
    sim.emit("payment_intent.succeeded", pi, ctx)
    attempts.after_capture(sim, charge["id"], store.pm_behaviour[charge["payment_method"]])
    return pi


def cancel(sim: Any, ctx: Ctx, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
    store = sim.store
    pi = fetch(store.payment_intents, pi_id, "intent")
    if pi["status"] not in CANCELABLE:
        raise unexpected_state(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a "
            "PaymentIntent with one of the following statuses may be canceled: " + ", ".join(CANCELABLE) + ".",
            payment_intent=pi)
    charge = store.charges.get(pi["latest_charge"]) if pi["status"] == "requires_capture" else None
    if charge is not None:
        charge.update(amount_refunded=charge["amount"], refunded=True)
        sim.emit("charge.refunded", charge, ctx)
    reason = params.get("cancellation_reason")
    pi.update(status="canceled", canceled_at=now(), cancellation_reason=reason, amount_capturable=0,
              next_action=None)
    sim.emit("payment_intent.canceled", pi, ctx)
    if charge is not None:
        # Releasing an authorization is Stripe's refund of an uncaptured charge: it closes the review.
        reviews.close_for_charge(sim, charge, "refunded_as_fraud" if reason == "fraudulent" else "refunded", ctx)
    return pi


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return list_page(sim.store.payment_intents, params, "/v1/payment_intents", owner=params.get("customer"))
