"""Events: Stripe's record of every state change, as retrieved and listed.

Each event freezes the object as it was when the event happened. The
snapshot is stored packed (see snapshots.py) in a small dict (a benchmark run
creates hundreds of thousands of events) and embedded unparsed into
responses via orjson.Fragment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ..context import Ctx, now
from ..snapshots import pack, unpack
from .common import fetch, list_page


def create(sim: Any, event_type: str, obj: dict[str, Any], ctx: Ctx,
           previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record an event; stored compactly, shown through `view`."""
    data: dict[str, Any] = {"object": obj}
    if previous:
        data["previous_attributes"] = previous
    event = {
        "id": sim.store.ids.new("evt"),
        "created": now(),
        "type": event_type,
        "pending_webhooks": sim.webhooks.count_for(event_type),
        "_data": pack(orjson.dumps(data)),
        "_request": (ctx.request_id, ctx.idempotency_key),
        "_api_version": ctx.api_version,
    }
    return sim.store.events.add(event)


def view(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Stripe shows it, its frozen data embedded without re-parsing."""
    request_id, idempotency_key = event["_request"]
    return {
        "id": event["id"],
        "object": "event",
        "api_version": event["_api_version"],
        "created": event["created"],
        "data": orjson.Fragment(unpack(event["_data"])),
        "livemode": False,
        "pending_webhooks": event["pending_webhooks"],
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event["type"],
    }


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], event_id: str) -> dict[str, Any]:
    return view(fetch(sim.store.events, event_id, "id"))


def _type_filter(params: dict[str, Any]) -> Callable[[dict[str, Any]], bool] | None:
    """Stripe's `type` (exact, or a `prefix.*` wildcard) and `types[]` filters."""
    wanted = set(params.get("types", ()))
    if "type" in params:
        if params["type"].endswith("*"):
            prefix = params["type"][:-1]
            return lambda event: event["type"].startswith(prefix)
        wanted.add(params["type"])
    return (lambda event: event["type"] in wanted) if wanted else None


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    page = list_page(sim.store.events, params, "/v1/events", keep=_type_filter(params))
    page["data"] = [view(e) for e in page["data"]]
    return page
