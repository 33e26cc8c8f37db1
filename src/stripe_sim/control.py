"""`/_sim/*` control endpoints: knobs, request log, reset, and customer/bank/network actions.

These are what Stripe's dashboard, a customer's browser, a bank or a card
network would do; tests call them to drive paymentd through flows that real
Stripe only produces on its own (3-D Secure, settlement, disputes, failures).
JSON in, JSON out, no authentication.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from .errors import StripeError, invalid_request, resource_missing
from .resources import attempts, disputes, early_fraud_warnings, refunds
from .sim import Sim


def _rss_kb() -> int:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _stats(sim: Sim) -> dict[str, Any]:
    store = sim.store
    counts = {name: len(getattr(store, name).objects) for name in (
        "payment_intents", "charges", "payment_methods", "customers", "refunds", "events",
        "webhook_endpoints", "disputes", "reviews", "early_fraud_warnings")}
    return {"objects": counts, "idempotency_keys": len(sim.idempotency.entries),
            "requests_logged": len(sim.requests), "rss_kb": _rss_kb()}


def _outcome(body: dict[str, Any], allowed: tuple[str, ...], default: str | None = None) -> str | None:
    outcome = body.get("outcome", default)
    if outcome is not None and outcome not in allowed:
        raise invalid_request(f"outcome must be one of {', '.join(allowed)}", param="outcome")
    return outcome


def _redirect(sim: Sim, pi_id: str, query: bytes) -> tuple[int, Any, dict[str, str]]:
    """The page a customer lands on from next_action: completes it, then sends them to return_url."""
    pi = sim.store.payment_intents.get(pi_id)
    if pi is None:
        raise resource_missing("payment_intent", pi_id, "intent")
    return_url = ((pi.get("next_action") or {}).get("redirect_to_url") or {}).get("return_url")
    outcome = dict(parse_qsl(query.decode())).get("outcome", "succeed")
    attempts.authenticate(sim, pi_id, "fail" if outcome == "fail" else "succeed")
    if not return_url:
        return 200, pi, {}
    status = "failed" if pi["status"] == "requires_payment_method" else "succeeded"
    query_string = urlencode({"payment_intent": pi_id, "payment_intent_client_secret": pi["client_secret"],
                              "redirect_status": status})
    return 302, None, {"location": return_url + ("&" if "?" in return_url else "?") + query_string}


def handle(sim: Sim, method: str, path: str, query: bytes, body: bytes) -> tuple[int, Any, dict[str, str]]:
    """Serve one control request: (status, JSON-able body, extra headers)."""
    parts = path.strip("/").split("/")[1:]  # drop the leading "_sim"
    data = orjson.loads(body) if body.strip() else {}
    if not isinstance(data, dict):
        raise invalid_request("control endpoints take a JSON object")
    # "/_sim/payment_intents/pi_123/settle" matches ("POST", "payment_intents", "*", "settle").
    route = (method, parts[0], "*", *parts[2:]) if len(parts) > 1 else (method, *parts)
    target = parts[1] if len(parts) > 1 else ""
    match route:
        case ("GET", "health"):
            return 200, {"ok": True}, {}
        case ("GET", "stats"):
            return 200, _stats(sim), {}
        case ("POST", "reset"):
            sim.reset()
            return 200, {"ok": True}, {}
        case ("GET", "config"):
            return 200, sim.config.as_dict(), {}
        case ("POST", "config"):
            try:
                sim.apply_config(data)
            except (ValueError, TypeError) as exc:
                raise invalid_request(str(exc)) from None
            return 200, sim.config.as_dict(), {}
        case ("GET", "requests"):
            # Optional exact-match filters, e.g. ?operation=POST /v1/refunds&status=200
            wanted = dict(parse_qsl(query.decode()))
            rows = [r for r in sim.requests if all(str(r.get(k)) == v for k, v in wanted.items())]
            return 200, {"data": rows}, {}
        case ("DELETE", "requests"):
            sim.requests.clear()
            return 200, {"ok": True}, {}
        case ("GET", "faults"):
            return 200, {"data": sim.faults.queued}, {}
        case ("POST", "faults"):
            try:
                sim.faults.add(data["kind"], int(data.get("count", 1)), data.get("operation"), data.get("status"))
            except (KeyError, ValueError) as exc:
                raise invalid_request(f"bad fault: {exc}") from None
            return 200, {"data": sim.faults.queued}, {}
        case ("DELETE", "faults"):
            sim.faults.queued.clear()
            return 200, {"ok": True}, {}
        case ("GET", "webhooks"):
            return 200, {"data": list(sim.webhooks.attempts)}, {}
        case ("DELETE", "webhooks"):
            sim.webhooks.attempts.clear()
            return 200, {"ok": True}, {}
        case ("POST", "payment_intents", "*", "authenticate"):
            outcome = _outcome(data, ("succeed", "fail"), "succeed")
            return 200, attempts.authenticate(sim, target, outcome), {}
        case ("POST", "payment_intents", "*", "settle"):
            if sim.store.payment_intents.get(target) is None:
                raise resource_missing("payment_intent", target, "intent")
            return 200, attempts.settle(sim, target, _outcome(data, ("succeed", "fail"))), {}
        case ("POST", "refunds", "*", "fail"):
            return 200, refunds.fail(sim, target), {}
        case ("POST", "charges", "*", "dispute"):
            return 200, disputes.open_for(sim, target, data.get("reason", "fraudulent"), data.get("amount")), {}
        case ("POST", "charges", "*", "early_fraud_warning"):
            return 200, early_fraud_warnings.warn_for(sim, target, data.get("fraud_type", "misc")), {}
        case ("POST", "disputes", "*", "close"):
            return 200, disputes.resolve(sim, target, _outcome(data, ("won", "lost"), "lost")), {}
        case ("GET", "redirect", "*"):
            return _redirect(sim, target, query)
    raise StripeError(404, {"message": f"Unknown simulator control endpoint {method} {path}",
                            "type": "invalid_request_error"})
