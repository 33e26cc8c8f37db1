"""Fidelity to Stripe's OpenAPI description (../shared/stripe/openapi.json).

Every object type the simulator returns, every list and error body, and every
request it accepted in a broad scenario are validated against the spec with
jsonschema (after rewriting OpenAPI's `nullable`), and the packaged parameter
schemas must equal a fresh extraction from the spec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from stripe_sim.params import extract

# The shared folder sits next to the main checkout, or two levels up from a worktree in wt/.
_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = next((p for p in (_ROOT.parent / "shared" / "stripe" / "openapi.json",
                              _ROOT.parent.parent / "shared" / "stripe" / "openapi.json") if p.exists()),
                 _ROOT.parent / "shared" / "stripe" / "openapi.json")
KEY = {"Authorization": "Bearer sk_test_fidelity"}

# Fields real Stripe returns today that this (older) spec does not describe yet.
NEWER_FIELDS = {
    "payment_intent": {"excluded_payment_method_types", "payment_method_configuration_details", "source"},
    "payment_method": {"allow_redisplay"},
    "charge": set(),
    "refund": set(),
}


def _rewrite_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _rewrite_nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"{SPEC_PATH} not present")
    raw = json.loads(SPEC_PATH.read_text())
    return {"raw": raw, "components": _rewrite_nullable(raw["components"]), "paths": _rewrite_nullable(raw["paths"])}


def check(spec: dict[str, Any], schema: dict[str, Any], instance: Any, what: str = "") -> None:
    root = {**schema, "components": spec["components"]}
    errors = sorted(jsonschema.Draft202012Validator(root).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, what + "\n" + "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:5])


def check_object(spec: dict[str, Any], kind: str, obj: dict[str, Any]) -> None:
    check(spec, {"$ref": f"#/components/schemas/{kind}"}, obj, f"{kind} {obj.get('id')}")
    known = set(spec["raw"]["components"]["schemas"][kind]["properties"]) | NEWER_FIELDS.get(kind, set())
    assert set(obj) - known == set(), f"{kind} has fields the spec does not know"


def test_packaged_parameter_schemas_match_the_spec(spec):
    packaged = (Path(extract.__file__).with_name("operations.json")).read_text()
    assert extract.render(spec["raw"]) == packaged, "run: python -m stripe_sim.params.extract"


@pytest.fixture
async def http(sim):
    async with httpx.AsyncClient(base_url=sim.url, headers=KEY, timeout=10) as client:
        yield client


async def post(http: httpx.AsyncClient, path: str, data: dict[str, str] | None = None,
               expect: int = 200) -> dict[str, Any]:
    response = await http.post(path, data=data or {})
    assert response.status_code == expect, response.text
    return response.json()


async def scenario(http: httpx.AsyncClient, control: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    """Drive the simulator through every object state; return the raw JSON seen, by object type."""
    seen: dict[str, list[dict[str, Any]]] = {}

    def keep(obj: dict[str, Any]) -> dict[str, Any]:
        seen.setdefault(obj["object"], []).append(obj)
        return obj

    usd = {"amount": "2000", "currency": "usd"}
    customer = keep(await post(http, "/v1/customers", {"email": "f@example.com", "name": "F", "metadata[a]": "1"}))
    keep(await post(http, "/v1/payment_methods/pm_card_visa/attach", {"customer": customer["id"]}))
    for data in ({"type": "sepa_debit", "sepa_debit[iban]": "DE89370400440532013000",
                  "billing_details[name]": "F", "billing_details[email]": "f@example.com"},
                 {"type": "us_bank_account", "us_bank_account[routing_number]": "110000000",
                  "us_bank_account[account_number]": "000123456789", "billing_details[name]": "F"},
                 {"type": "ideal"}, {"type": "bancontact"},
                 {"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "1",
                  "card[exp_year]": "2040", "card[cvc]": "123"}):
        keep(await post(http, "/v1/payment_methods", data))
    keep(await post(http, "/v1/payment_intents", usd))
    keep(await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_visa"}))
    keep(await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_threeDSecure2Required",
                                                  "confirm": "true"}))
    redirect = keep(await post(http, "/v1/payment_intents", {
        "amount": "2000", "currency": "eur", "payment_method_data[type]": "ideal", "confirm": "true",
        "return_url": "https://example.com/r"}))
    keep((await control.post(f"/payment_intents/{redirect['id']}/authenticate", json={"outcome": "fail"})).json())
    manual = keep(await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_visa",
                                                           "confirm": "true", "capture_method": "manual"}))
    keep(await post(http, f"/v1/payment_intents/{manual['id']}/capture", {"amount_to_capture": "1500"}))
    paid = keep(await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_refundFail",
                                                         "confirm": "true", "customer": customer["id"],
                                                         "expand[]": "latest_charge"}))
    keep(paid["latest_charge"])
    keep(await post(http, "/v1/refunds", {"payment_intent": paid["id"], "amount": "500"}))
    failing = keep(await post(http, "/v1/refunds", {"payment_intent": paid["id"], "amount": "500"}))
    keep((await control.post(f"/refunds/{failing['id']}/fail")).json())
    canceled = keep(await post(http, "/v1/payment_intents", usd))
    keep(await post(http, f"/v1/payment_intents/{canceled['id']}/cancel", {"cancellation_reason": "abandoned"}))
    keep(await post(http, "/v1/payment_intents", {
        "amount": "2000", "currency": "eur", "confirm": "true", "payment_method_data[type]": "sepa_debit",
        "payment_method_data[sepa_debit][iban]": "DE89370400440532013000",
        "payment_method_data[billing_details][name]": "F",
        "payment_method_data[billing_details][email]": "f@example.com"}))
    declined = await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_chargeDeclined",
                                                        "confirm": "true"}, expect=402)
    keep(declined["error"]["payment_intent"])
    keep((await http.get(f"/v1/charges/{declined['error']['charge']}")).json())
    seen["error"] = [declined]
    # Radar: a review opened, listed and approved; a blocked charge; a warning made unactionable by a dispute.
    elevated = keep(await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_riskLevelElevated",
                                                             "confirm": "true", "capture_method": "manual"}))
    keep(await post(http, f"/v1/payment_intents/{elevated['id']}/capture"))
    keep((await http.get(f"/v1/reviews/{elevated['review']}")).json())
    keep((await http.get("/v1/reviews")).json()["data"][0])
    approved = keep(await post(http, f"/v1/reviews/{elevated['review']}/approve", {"expand[]": "charge"}))
    keep(approved["charge"])
    keep((await http.get(f"/v1/reviews/{elevated['review']}")).json())
    keep(await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_riskLevelElevated",
                                                  "confirm": "true"}))  # its review stays open
    blocked = await post(http, "/v1/payment_intents", {**usd, "payment_method": "pm_card_radarBlock",
                                                       "confirm": "true"}, expect=402)
    keep((await http.get(f"/v1/charges/{blocked['error']['charge']}")).json())
    seen["error"].append(blocked)
    keep((await control.post(f"/charges/{paid['latest_charge']['id']}/early_fraud_warning", json={})).json())
    dispute = keep((await control.post(f"/charges/{paid['latest_charge']['id']}/dispute", json={})).json())
    warnings = (await http.get("/v1/radar/early_fraud_warnings", params={"charge": paid["latest_charge"]["id"]}))
    keep((await http.get(f"/v1/radar/early_fraud_warnings/{warnings.json()['data'][0]['id']}")).json())
    keep((await control.post(f"/disputes/{dispute['id']}/close", json={"outcome": "won"})).json())
    endpoint = keep(await post(http, "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/x",
                                                               "enabled_events[]": "charge.failed"}))
    keep((await http.get(f"/v1/webhook_endpoints/{endpoint['id']}")).json())
    keep(await post(http, f"/v1/customers/{customer['id']}", {"description": "updated"}))
    for path in ("/v1/payment_intents/pi_missing", "/v1/nothing"):
        seen["error"].append((await http.get(path)).json())
    seen["error"].append((await httpx.AsyncClient(base_url=http.base_url).get("/v1/customers")).json())
    seen["error"].append(await post(http, "/v1/payment_intents", {"amount": "x"}, expect=400))
    events = (await http.get("/v1/events", params={"limit": "100"})).json()["data"]
    seen["event"] = events
    return seen


async def test_every_object_matches_its_schema(spec, http, control):
    seen = await scenario(http, control)
    for kind in ("payment_intent", "charge", "payment_method", "customer", "refund", "event", "error",
                 "webhook_endpoint", "dispute", "review", "radar.early_fraud_warning"):
        assert seen.get(kind), f"scenario produced no {kind}"
        for obj in seen[kind]:
            if kind == "error":
                check(spec, {"$ref": "#/components/schemas/error"}, obj)
            else:
                check_object(spec, kind, obj)
    statuses = {pi["status"] for pi in seen["payment_intent"]}
    assert statuses == {"requires_payment_method", "requires_confirmation", "requires_action", "requires_capture",
                        "succeeded", "canceled", "processing"}
    assert {r["status"] for r in seen["refund"]} == {"succeeded", "failed"}
    assert {c["status"] for c in seen["charge"]} == {"succeeded", "failed"}
    assert {c["outcome"]["type"] for c in seen["charge"] if c["outcome"]} >= {
        "authorized", "manual_review", "issuer_declined", "blocked"}
    assert {r["open"] for r in seen["review"]} == {True, False}
    assert {w["actionable"] for w in seen["radar.early_fraud_warning"]} == {True, False}


async def test_event_payloads_match_their_object_schemas(spec, http, control):
    seen = await scenario(http, control)
    kinds = set()
    for event in seen["event"]:
        obj = event["data"]["object"]
        kinds.add(obj["object"])
        check_object(spec, obj["object"], obj)
    assert {"payment_intent", "charge", "refund", "customer", "payment_method", "dispute", "review",
            "radar.early_fraud_warning"} <= kinds
    types = {event["type"] for event in seen["event"]}
    assert {"review.opened", "review.closed", "radar.early_fraud_warning.created",
            "radar.early_fraud_warning.updated"} <= types


@pytest.mark.parametrize("path", ["/v1/payment_intents", "/v1/charges", "/v1/refunds", "/v1/customers",
                                  "/v1/events", "/v1/disputes", "/v1/webhook_endpoints", "/v1/reviews",
                                  "/v1/radar/early_fraud_warnings"])
async def test_list_responses_match_the_spec(spec, http, control, path):
    await scenario(http, control)
    response = (await http.get(path)).json()
    schema = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    check(spec, schema, response)
    assert response["data"], f"{path} listed nothing"


async def test_accepted_requests_match_the_spec_request_schemas(spec, http, control):
    """The simulator's own parameter check is cross-checked by jsonschema on what it accepted."""
    await scenario(http, control)
    log = (await control.get("/requests")).json()["data"]
    accepted = [r for r in log if r["operation"] and r["status"] in (200, 402)]
    assert len(accepted) > 20
    for request in accepted:
        method, template = request["operation"].split(" ", 1)
        operation = spec["paths"][template][method.lower()]
        if method == "POST":
            schema = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        else:
            schema = {"type": "object", "additionalProperties": False, "properties": {
                p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "query"}}
        check(spec, schema, request["params"])
