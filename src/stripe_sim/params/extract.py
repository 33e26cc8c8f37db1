"""Extract the request-parameter schemas the simulator checks from Stripe's OpenAPI spec.

Loading the 2.5 MB spec costs ~0.5 s, too much for every start, so this
script writes a compact JSON (only the supported operations, only the
keywords the validator reads) that ships inside the package. Run it as
`python -m stripe_sim.params.extract [path/to/openapi.json]`; a test checks
the shipped file still matches the spec.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("operations.json")
DEFAULT_SPEC = Path(__file__).resolve().parents[4] / "shared" / "stripe" / "openapi.json"

# Every Stripe operation the simulator serves, as "METHOD /path/{template}".
OPERATIONS = [
    "GET /v1/payment_intents",
    "POST /v1/payment_intents",
    "GET /v1/payment_intents/{intent}",
    "POST /v1/payment_intents/{intent}",
    "POST /v1/payment_intents/{intent}/confirm",
    "POST /v1/payment_intents/{intent}/capture",
    "POST /v1/payment_intents/{intent}/cancel",
    "GET /v1/charges",
    "GET /v1/charges/{charge}",
    "GET /v1/payment_methods",
    "POST /v1/payment_methods",
    "GET /v1/payment_methods/{payment_method}",
    "POST /v1/payment_methods/{payment_method}",
    "POST /v1/payment_methods/{payment_method}/attach",
    "POST /v1/payment_methods/{payment_method}/detach",
    "GET /v1/customers",
    "POST /v1/customers",
    "GET /v1/customers/{customer}",
    "POST /v1/customers/{customer}",
    "DELETE /v1/customers/{customer}",
    "GET /v1/customers/{customer}/payment_methods",
    "GET /v1/customers/{customer}/payment_methods/{payment_method}",
    "GET /v1/refunds",
    "POST /v1/refunds",
    "GET /v1/refunds/{refund}",
    "POST /v1/refunds/{refund}",
    "GET /v1/events",
    "GET /v1/events/{id}",
    "GET /v1/disputes",
    "GET /v1/disputes/{dispute}",
    "POST /v1/disputes/{dispute}/close",
    "GET /v1/reviews",
    "GET /v1/reviews/{review}",
    "POST /v1/reviews/{review}/approve",
    "GET /v1/radar/early_fraud_warnings",
    "GET /v1/radar/early_fraud_warnings/{early_fraud_warning}",
    "GET /v1/webhook_endpoints",
    "POST /v1/webhook_endpoints",
    "GET /v1/webhook_endpoints/{webhook_endpoint}",
    "POST /v1/webhook_endpoints/{webhook_endpoint}",
    "DELETE /v1/webhook_endpoints/{webhook_endpoint}",
]

_KEPT = ("type", "properties", "required", "enum", "items", "anyOf", "maxLength", "additionalProperties")


def _compact(node: Any, spec: dict[str, Any]) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _compact(spec["components"]["schemas"][name], spec)
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key in _KEPT:
        if key not in node:
            continue
        value = node[key]
        if key == "properties":
            out[key] = {name: _compact(sub, spec) for name, sub in sorted(value.items())}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _compact(value, spec)
        elif key == "anyOf":
            out[key] = [_compact(sub, spec) for sub in value]
        else:
            out[key] = value
    return out


def _operation_schema(op: dict[str, Any], method: str, spec: dict[str, Any]) -> dict[str, Any]:
    if method == "POST":
        body = op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        return _compact(body, spec)
    # GET and DELETE carry their parameters in the query string.
    props, required = {}, []
    for param in op.get("parameters", []):
        if param["in"] != "query":
            continue
        props[param["name"]] = _compact(param["schema"], spec)
        if param.get("required"):
            required.append(param["name"])
    schema: dict[str, Any] = {"additionalProperties": False, "properties": dict(sorted(props.items())),
                              "type": "object"}
    if required:
        schema["required"] = sorted(required)
    return schema


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """Return the compact {operation: schema} mapping for OPERATIONS."""
    result = {}
    for operation in OPERATIONS:
        method, path = operation.split(" ", 1)
        result[operation] = _operation_schema(spec["paths"][path][method.lower()], method, spec)
    return result


def render(spec: dict[str, Any]) -> str:
    return json.dumps(build(spec), sort_keys=True, separators=(",", ":")) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec_path = Path(args[0]) if args else DEFAULT_SPEC
    text = render(json.loads(spec_path.read_text()))
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(text)} bytes, {len(OPERATIONS)} operations)")


if __name__ == "__main__":
    main()
