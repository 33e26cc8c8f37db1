"""Webhook endpoints: where events are delivered, each with its own signing secret.

Registered through Stripe's own API (`POST /v1/webhook_endpoints` returns the
`secret`, only at creation) or at start with `--webhook-url/--webhook-secret`.
"""

from __future__ import annotations

from typing import Any

from ..context import Ctx, now
from ..errors import invalid_request
from .common import fetch, list_page, merged_metadata


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise invalid_request(f"Invalid URL: {url}. URLs must begin with http:// or https://", param="url",
                              code="url_invalid")


def register(sim: Any, url: str, secret: str | None = None, enabled_events: list[str] | None = None,
             description: str | None = None, metadata: dict[str, str] | None = None,
             api_version: str | None = None) -> dict[str, Any]:
    store = sim.store
    _check_url(url)
    endpoint = {
        "id": store.ids.new("we"),
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": None,
        "created": now(),
        "description": description,
        "enabled_events": enabled_events or ["*"],
        "livemode": False,
        "metadata": metadata or {},
        "status": "enabled",
        "url": url,
    }
    store.webhook_endpoints.add(endpoint)
    store.webhook_secrets[endpoint["id"]] = secret or f"whsec_{store.ids.token(32)}"
    return endpoint


def create(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    endpoint = register(sim, params["url"], None, params["enabled_events"], params.get("description"),
                        merged_metadata({}, params.get("metadata") or {}), params.get("api_version"))
    # Only the creation response reveals the secret.
    return {**endpoint, "secret": sim.store.webhook_secrets[endpoint["id"]]}


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    return fetch(sim.store.webhook_endpoints, endpoint_id, "webhook_endpoint")


def update(sim: Any, ctx: Ctx, params: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    endpoint = fetch(sim.store.webhook_endpoints, endpoint_id, "webhook_endpoint")
    if "url" in params:
        _check_url(params["url"])
        endpoint["url"] = params["url"]
    if "enabled_events" in params:
        endpoint["enabled_events"] = params["enabled_events"]
    if "description" in params:
        endpoint["description"] = params["description"] or None
    if "disabled" in params:
        endpoint["status"] = "disabled" if params["disabled"] else "enabled"
    if "metadata" in params:
        endpoint["metadata"] = merged_metadata(endpoint["metadata"], params["metadata"])
    return endpoint


def delete(sim: Any, ctx: Ctx, params: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    store = sim.store
    fetch(store.webhook_endpoints, endpoint_id, "webhook_endpoint")
    stub = {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
    store.webhook_endpoints.replace(stub)
    store.webhook_endpoints.index.remove(endpoint_id)
    store.webhook_secrets.pop(endpoint_id, None)
    return stub


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    return list_page(sim.store.webhook_endpoints, params, "/v1/webhook_endpoints")


def listening(sim: Any, event_type: str) -> list[dict[str, Any]]:
    """Enabled endpoints subscribed to `event_type` (or to everything)."""
    result = []
    # Endpoints are never packed (see Store.reset), so the stored dicts can be read directly.
    for endpoint in sim.store.webhook_endpoints.objects.values():
        if endpoint.get("status") != "enabled":
            continue
        enabled = endpoint["enabled_events"]
        if "*" in enabled or event_type in enabled:
            result.append(endpoint)
    return result
