"""Customers: create, retrieve, update, delete, list.

paymentd keeps a Customer per payer so cards can be saved (attached) and
reused off-session; only the fields it and Stripe's schema need are modelled.
"""

from __future__ import annotations

from typing import Any

from ..context import Ctx, now
from ..errors import invalid_request
from . import payment_methods
from .common import changed, fetch, list_page, merged_metadata

_SIMPLE = ("description", "email", "name", "phone")


def _invoice_settings(default_pm: str | None) -> dict[str, Any]:
    return {"custom_fields": None, "default_payment_method": default_pm, "footer": None,
            "rendering_options": None}


def create(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    store = sim.store
    customer = {
        "id": store.ids.new("cus"),
        "object": "customer",
        "address": None,
        "balance": params.get("balance", 0),
        "created": now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": params.get("description") or None,
        "discount": None,
        "email": params.get("email") or None,
        "invoice_prefix": store.ids.token(8).upper(),
        "invoice_settings": _invoice_settings(None),
        "livemode": False,
        "metadata": merged_metadata({}, params.get("metadata") or {}),
        "name": params.get("name") or None,
        "next_invoice_sequence": 1,
        "phone": params.get("phone") or None,
        "preferred_locales": params.get("preferred_locales") or [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    store.customers.add(customer)
    sim.emit("customer.created", customer, ctx)
    if params.get("payment_method"):
        pm = payment_methods.attach(sim, ctx, {"customer": customer["id"]}, params["payment_method"])
        default = (params.get("invoice_settings") or {}).get("default_payment_method")
        if default == params["payment_method"]:
            customer["invoice_settings"] = _invoice_settings(pm["id"])
    return customer


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    customer = sim.store.customers.get(customer_id)
    if customer is not None and customer.get("deleted"):
        return customer  # Stripe returns the deleted stub on retrieve
    return fetch(sim.store.customers, customer_id, "customer")


def update(sim: Any, ctx: Ctx, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    customer = fetch(sim.store.customers, customer_id, "customer")
    before = dict(customer)
    for key in _SIMPLE:
        if key in params:
            customer[key] = params[key] or None
    if "metadata" in params:
        customer["metadata"] = merged_metadata(customer["metadata"], params["metadata"])
    settings = params.get("invoice_settings")
    if isinstance(settings, dict) and "default_payment_method" in settings:
        default = settings["default_payment_method"] or None
        if default is not None:
            pm = fetch(sim.store.payment_methods, default, "invoice_settings[default_payment_method]")
            if pm["customer"] != customer_id:
                raise invalid_request(f"No such PaymentMethod: '{default}'; It does not belong to this customer.",
                                      param="invoice_settings[default_payment_method]")
        customer["invoice_settings"] = _invoice_settings(default)
    previous = changed(before, customer)
    if previous:  # Stripe sends no event for an update that changes nothing
        sim.emit("customer.updated", customer, ctx, previous)
    return customer


def delete(sim: Any, ctx: Ctx, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
    store = sim.store
    customer = fetch(store.customers, customer_id, "customer")
    stub = {"id": customer_id, "object": "customer", "deleted": True}
    store.customers.replace(stub)
    store.customers.index.remove(customer_id)
    sim.emit("customer.deleted", customer, ctx)
    return stub


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    email = params.get("email")
    keep = (lambda c: c["email"] == email) if email else None
    return list_page(sim.store.customers, params, "/v1/customers", keep=keep)
