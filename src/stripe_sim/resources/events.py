"""Events: Stripe's record of every state change, as retrieved and listed.

Each event freezes the object as it was when the event happened. The
snapshot is stored as compressed JSON (a benchmark run creates hundreds of
thousands of events) and embedded unparsed into responses via orjson.Fragment.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from ..context import Ctx, now
from .common import fetch, list_page


def create(sim: Any, event_type: str, obj: dict[str, Any], ctx: Ctx,
           previous: dict[str, Any] | None = None) -> dict[str, Any]:
    store = sim.store
    data: dict[str, Any] = {"object": zlib.compress(orjson.dumps(obj), 1)}
    if previous:
        data["previous_attributes"] = previous
    event = {
        "id": store.ids.new("evt"),
        "object": "event",
        "api_version": ctx.api_version,
        "created": now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": sim.webhooks.count_for(event_type),
        "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
        "type": event_type,
    }
    return store.events.add(event)


def view(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Stripe shows it, with its snapshot decompressed in place."""
    data = dict(event["data"])
    data["object"] = orjson.Fragment(zlib.decompress(data["object"]))
    return {**event, "data": data}


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], event_id: str) -> dict[str, Any]:
    return view(fetch(sim.store.events, event_id, "id"))


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    types = set(params.get("types", ()))
    if "type" in params:
        wanted = params["type"]
        if wanted.endswith("*"):
            prefix = wanted[:-1]
            types_match = lambda e: e["type"].startswith(prefix)  # noqa: E731
        else:
            types.add(wanted)
    keep = None
    if types:
        keep = lambda e: e["type"] in types  # noqa: E731
    elif "type" in params:
        keep = types_match
    page = list_page(sim.store.events, params, "/v1/events", keep=keep)
    page["data"] = [view(e) for e in page["data"]]
    return page
