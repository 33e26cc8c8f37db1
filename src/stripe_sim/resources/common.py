"""Helpers every resource module uses: lookups, lists, metadata, created filters.

These encode Stripe conventions that are the same for all object types, so
each resource module only describes what is particular to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import invalid_request, resource_missing
from ..store import Collection


def fetch(collection: Collection, object_id: str, param: str) -> dict[str, Any]:
    obj = collection.get(object_id)
    if obj is None or obj.get("deleted"):
        raise resource_missing(collection.kind, object_id, param)
    return obj


def _created_filter(created: Any) -> Callable[[dict[str, Any]], bool] | None:
    if created is None:
        return None
    if isinstance(created, int):
        return lambda obj: obj["created"] == created
    bounds = [(op, value) for op, value in created.items()]

    def keep(obj: dict[str, Any]) -> bool:
        t = obj["created"]
        return all({"gt": t > v, "gte": t >= v, "lt": t < v, "lte": t <= v}[op] for op, v in bounds)

    return keep


def list_page(collection: Collection, params: dict[str, Any], url: str, *, owner: str | None = None,
              keep: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """A Stripe list object, newest first, honouring limit and the cursors."""
    limit = params.get("limit", 10)
    if limit < 1 or limit > 100:
        raise invalid_request("This value must be greater than or equal to 1 and less than or equal to 100.",
                              param="limit")
    for cursor in ("starting_after", "ending_before"):
        if cursor in params and collection.get(params[cursor]) is None:
            raise resource_missing(collection.kind, params[cursor], cursor)
    created = _created_filter(params.get("created"))
    if created and keep:
        base = keep
        keep = lambda obj: created(obj) and base(obj)
    else:
        keep = keep or created
    data, has_more = collection.page(limit=limit, starting_after=params.get("starting_after"),
                                     ending_before=params.get("ending_before"), owner=owner, keep=keep)
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def merged_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's metadata update: keys merge, "" removes a key, metadata="" clears all."""
    if update == "":
        return {}
    merged = dict(current)
    for key, value in update.items():
        if len(key) > 40:
            raise invalid_request(f"Invalid metadata: metadata keys can be at most 40 characters long, "
                                  f"but {key!r} is {len(key)} characters.", param=f"metadata[{key}]")
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise invalid_request("Invalid metadata: metadata can have at most 50 keys.", param="metadata")
    return merged


ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf"}
_SYMBOLS = {"usd": "$", "cad": "$", "aud": "$", "nzd": "$", "sgd": "$", "hkd": "$", "mxn": "$", "eur": "€",
            "gbp": "£", "jpy": "¥", "inr": "₹"}


def money(amount: int, currency: str, with_code: bool = True) -> str:
    """An amount as Stripe's error messages write it: `$0.50 usd`, or `$15.00` without the code."""
    value = f"{amount:,}" if currency in ZERO_DECIMAL else f"{amount / 100:,.2f}"
    text = _SYMBOLS.get(currency, "") + value
    return f"{text} {currency}" if with_code else text


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`previous_attributes` for an *.updated event: old values of the top-level keys that changed."""
    return {key: before.get(key) for key in after if before.get(key) != after[key]}
