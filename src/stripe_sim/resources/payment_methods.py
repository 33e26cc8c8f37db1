"""PaymentMethods: cards (test numbers, tokens, `pm_card_*` ids), SEPA, US bank, redirects.

A PaymentMethod records how a customer pays; the simulator also remembers,
out of sight, the test behaviour of the instrument behind it (decline,
3-D Secure, delayed settlement...), which the payment engine consults.
Nested dicts are never changed in place (updates replace them), so identical
ones, such as a test card's details, are shared between objects.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

from .. import testcards
from ..context import Ctx, now
from ..errors import card_error, invalid_request, resource_missing
from .common import changed, fetch, list_page, merged_metadata

_EXP_YEAR = time.gmtime().tm_year + 3
_ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")
REDIRECT_TYPES = ("ideal", "bancontact")
DELAYED_TYPES = ("sepa_debit", "us_bank_account")


def _fingerprint(secret: str) -> str:
    return hashlib.sha1(secret.encode()).hexdigest()[:16]


def _billing_details(given: dict[str, Any] | str | None) -> dict[str, Any]:
    if not given:
        return _NO_BILLING_DETAILS
    address = given.get("address") or {}
    return {
        "address": {key: address.get(key) for key in _ADDRESS_KEYS},
        "email": given.get("email") or None,
        "name": given.get("name") or None,
        "phone": given.get("phone") or None,
        "tax_id": given.get("tax_id") or None,
    }


_NO_BILLING_DETAILS = {"address": dict.fromkeys(_ADDRESS_KEYS), "email": None, "name": None, "phone": None,
                       "tax_id": None}


def _card_details(card: testcards.Card, exp_month: int, exp_year: int, cvc_checked: bool) -> dict[str, Any]:
    return {
        "brand": card.brand,
        "checks": {"address_line1_check": None, "address_postal_code_check": None,
                   "cvc_check": "pass" if cvc_checked else None},
        "country": card.country,
        "display_brand": card.brand,
        "exp_month": exp_month,
        "exp_year": exp_year,
        "fingerprint": _fingerprint(card.number),
        "funding": card.funding,
        "generated_from": None,
        "last4": card.last4,
        "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }


def _brand(number: str) -> str:
    return {"4": "visa", "5": "mastercard", "2": "mastercard", "3": "amex", "6": "discover"}.get(number[0], "unknown")


def _raw_card(card: dict[str, Any]) -> tuple[testcards.Card, int, int]:
    """Check a card given by number the way Stripe's card network checks do."""
    number = card.get("number", "").replace(" ", "")
    exp_month, exp_year = card.get("exp_month"), card.get("exp_year")
    if not number.isdigit() or not 12 <= len(number) <= 19 or not testcards.luhn_ok(number):
        raise card_error("Your card number is incorrect.", code="incorrect_number", param="number")
    if exp_month is None or not 1 <= int(exp_month) <= 12:
        raise card_error("Your card's expiration month is invalid.", code="invalid_expiry_month",
                         param="exp_month")
    year = int(exp_year) if exp_year is not None else 0
    year = year + 2000 if year < 100 else year
    current = time.gmtime()
    if year < current.tm_year or (year == current.tm_year and int(exp_month) < current.tm_mon):
        raise card_error("Your card's expiration year is invalid.", code="invalid_expiry_year",
                         param="exp_year")
    known = testcards.CARDS.get(number)
    if known is None:
        raise card_error(
            "Your card was declined. Your request was in test mode, but used a non test (live) card. "
            "For a list of valid test cards, visit: https://stripe.com/docs/testing.",
            code="card_declined", decline_code="test_mode_live_card")
    return known, int(exp_month), year


def _new(sim: Any, pm_type: str, details: dict[str, Any], behaviour: testcards.Behaviour,
         billing_details: Any = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    store = sim.store
    pm = {
        "id": store.ids.new("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": _billing_details(billing_details),
        "created": now(),
        "customer": None,
        "livemode": False,
        "metadata": metadata or {},
        "type": pm_type,
        pm_type: details,
    }
    store.pm_behaviour[pm["id"]] = behaviour
    return store.payment_methods.add(pm)


@functools.cache
def _test_card_details(card: testcards.Card) -> dict[str, Any]:
    return _card_details(card, 12, _EXP_YEAR, True)


def from_test_card(sim: Any, card: testcards.Card) -> dict[str, Any]:
    return _new(sim, "card", _test_card_details(card), card.behaviour)


def _require(params: dict[str, Any], *path: str) -> Any:
    node: Any = params
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if node in (None, ""):
        name = path[0] + "".join(f"[{p}]" for p in path[1:])
        raise invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")
    return node


def build(sim: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Create a PaymentMethod from create params (also used for `payment_method_data`)."""
    pm_type = _require(params, "type")
    billing, metadata = params.get("billing_details"), params.get("metadata")
    if pm_type == "card":
        card = params.get("card") or {}
        token = card.get("token")
        if token:
            known = testcards.TEST_TOKENS.get(token)
            if known is None:
                raise resource_missing("token", token, "card[token]")
            return _new(sim, "card", _test_card_details(known), known.behaviour,
                        billing, metadata)
        _require(params, "card", "number")
        known, month, year = _raw_card(card)
        return _new(sim, "card", _card_details(known, month, year, "cvc" in card), known.behaviour,
                    billing, metadata)
    if pm_type == "sepa_debit":
        iban = _require(params, "sepa_debit", "iban").replace(" ", "").upper()
        _require(params, "billing_details", "name")
        _require(params, "billing_details", "email")
        if len(iban) < 15 or not iban[:2].isalpha() or not iban[2:].isalnum():
            raise invalid_request("The IBAN you provided is invalid.", param="sepa_debit[iban]",
                                  code="invalid_bank_account_iban")
        details = {"bank_code": iban[4:12], "branch_code": "", "country": iban[:2],
                   "fingerprint": _fingerprint(iban), "generated_from": {"charge": None, "setup_attempt": None},
                   "last4": iban[-4:]}
        return _new(sim, pm_type, details, testcards.bank_behaviour(iban), billing, metadata)
    if pm_type == "us_bank_account":
        account = _require(params, "us_bank_account", "account_number")
        routing = _require(params, "us_bank_account", "routing_number")
        _require(params, "billing_details", "name")
        if len(routing) != 9 or not routing.isdigit():
            raise invalid_request("Routing number must have 9 digits.", param="us_bank_account[routing_number]",
                                  code="routing_number_invalid")
        given = params["us_bank_account"]
        details = {"account_holder_type": given.get("account_holder_type", "individual"),
                   "account_type": given.get("account_type", "checking"), "bank_name": "STRIPE TEST BANK",
                   "financial_connections_account": None, "fingerprint": _fingerprint(routing + account),
                   "last4": account[-4:], "networks": {"preferred": "ach", "supported": ["ach"]},
                   "routing_number": routing, "status_details": {}}
        return _new(sim, pm_type, details, testcards.bank_behaviour(account), billing, metadata)
    if pm_type == "ideal":
        details = {"bank": (params.get("ideal") or {}).get("bank"), "bic": None}
        return _new(sim, pm_type, details, testcards.REDIRECT, billing, metadata)
    if pm_type == "bancontact":
        return _new(sim, pm_type, {}, testcards.REDIRECT, billing, metadata)
    raise invalid_request(f"The payment method type `{pm_type}` is not supported by the simulator.",
                          param="type")


def resolve(sim: Any, pm_id: str, param: str = "payment_method") -> dict[str, Any]:
    """A stored PaymentMethod, or a fresh one for a test id like `pm_card_visa` (as Stripe does)."""
    card = testcards.TEST_PAYMENT_METHODS.get(pm_id)
    if card is not None:
        return from_test_card(sim, card)
    return fetch(sim.store.payment_methods, pm_id, param)


def create(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return build(sim, params)


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], pm_id: str) -> dict[str, Any]:
    return resolve(sim, pm_id)


def update(sim: Any, ctx: Ctx, params: dict[str, Any], pm_id: str) -> dict[str, Any]:
    pm = fetch(sim.store.payment_methods, pm_id, "payment_method")
    before = dict(pm)
    if "metadata" in params:
        pm["metadata"] = merged_metadata(pm["metadata"], params["metadata"])
    if "billing_details" in params:
        merged = {**pm["billing_details"], **{k: v for k, v in params["billing_details"].items() if k != "address"}}
        merged["address"] = {**pm["billing_details"]["address"], **(params["billing_details"].get("address") or {})}
        pm["billing_details"] = _billing_details(merged)
    if "card" in params and pm["type"] == "card":
        pm["card"] = {**pm["card"], **{k: int(v) for k, v in params["card"].items() if k.startswith("exp_")}}
    previous = changed(before, pm)
    if previous:  # Stripe sends no event for an update that changes nothing
        sim.emit("payment_method.updated", pm, ctx, previous)
    return pm


def attach_to(sim: Any, pm: dict[str, Any], customer_id: str, ctx: Ctx) -> None:
    previous = pm["customer"]
    pm["customer"] = customer_id
    sim.store.payment_methods.by_owner[customer_id].add(pm["id"])
    sim.emit("payment_method.attached", pm, ctx, {"customer": previous})


def attach(sim: Any, ctx: Ctx, params: dict[str, Any], pm_id: str) -> dict[str, Any]:
    store = sim.store
    customer_id = _require(params, "customer")
    fetch(store.customers, customer_id, "customer")
    pm = resolve(sim, pm_id)
    if pm["customer"] == customer_id:
        return pm
    if pm["customer"] is not None:
        raise invalid_request("The payment method you provided has already been attached to a customer.",
                              param="payment_method")
    if pm["id"] in store.consumed_pms:
        raise invalid_request(
            "This PaymentMethod was previously used without being attached to a Customer or was detached "
            "from a Customer, and may not be used again.", param="payment_method")
    behaviour = store.pm_behaviour.get(pm["id"])
    if behaviour is not None and behaviour.attach_fails and behaviour.decline is not None:
        d = behaviour.decline
        raise card_error(d.message, code=d.code, decline_code=d.decline_code)
    attach_to(sim, pm, customer_id, ctx)
    return pm


def detach(sim: Any, ctx: Ctx, params: dict[str, Any], pm_id: str) -> dict[str, Any]:
    store = sim.store
    pm = fetch(store.payment_methods, pm_id, "payment_method")
    customer_id = pm["customer"]
    if customer_id is None:
        raise invalid_request("The payment method you provided is not attached to a customer so detachment "
                              "is impossible.", param="payment_method")
    pm["customer"] = None
    store.payment_methods.by_owner[customer_id].remove(pm_id)
    store.consumed_pms.add(pm_id)  # Stripe never lets a detached PaymentMethod be used again
    sim.emit("payment_method.detached", pm, ctx, {"customer": customer_id})
    return pm


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer = params.get("customer")
    wanted = params.get("type")
    keep = (lambda pm: pm["type"] == wanted) if wanted else None
    if customer is None:
        # Without a customer Stripe lists only Treasury methods, which the simulator has none of.
        return {"object": "list", "data": [], "has_more": False, "url": "/v1/payment_methods"}
    fetch(sim.store.customers, customer, "customer")
    return list_page(sim.store.payment_methods, params, "/v1/payment_methods", owner=customer, keep=keep)


def list_for_customer(sim: Any, ctx: Ctx, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    fetch(sim.store.customers, customer_id, "customer")
    wanted = params.get("type")
    keep = (lambda pm: pm["type"] == wanted) if wanted else None
    return list_page(sim.store.payment_methods, params, f"/v1/customers/{customer_id}/payment_methods",
                     owner=customer_id, keep=keep)


def retrieve_for_customer(sim: Any, ctx: Ctx, params: dict[str, Any], customer_id: str,
                          pm_id: str) -> dict[str, Any]:
    fetch(sim.store.customers, customer_id, "customer")
    pm = fetch(sim.store.payment_methods, pm_id, "payment_method")
    if pm["customer"] != customer_id:
        raise resource_missing("payment_method", pm_id, "payment_method")
    return pm
