"""Stripe's `expand[]`: replace an id in a response by the object it names.

Expansion works on copies, so stored objects keep plain ids; dotted paths
(`latest_charge.payment_method`, `data.customer` on lists) nest.
"""

from __future__ import annotations

from typing import Any

from .errors import invalid_request
from .store import Store


def _expand(store: Store, node: dict[str, Any], parts: list[str], path: str) -> dict[str, Any]:
    key, rest = parts[0], parts[1:]
    if key == "data" and node.get("object") == "list":
        return {**node, "data": [_expand(store, item, rest, path) if rest else item for item in node["data"]]}
    if key not in node:
        raise invalid_request(f"This property cannot be expanded ({path}).", param="expand")
    value = node[key]
    if value is None:
        return node  # nothing to expand, as with a PaymentIntent that has no charge yet
    if isinstance(value, str):
        value = store.by_prefix(value)
    elif not (isinstance(value, dict) and "id" in value):  # already expanded by an earlier path
        value = None
    if value is None:
        raise invalid_request(f"This property cannot be expanded ({path}).", param="expand")
    if rest:
        value = _expand(store, value, rest, path)
    return {**node, key: value}


def apply(store: Store, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    for path in paths:
        obj = _expand(store, obj, path.split("."), path)
    return obj
