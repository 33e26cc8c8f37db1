"""Request parameter checking against Stripe's own parameter schemas.

`operations.json` (written by `extract.py` from Stripe's OpenAPI spec) says
which parameters each operation takes and their types. `check` refuses what
Stripe refuses (unknown, mistyped, empty or missing parameters, with Stripe's
codes and `param` paths) and returns the parameters coerced to Python types,
so resource handlers never see raw strings where integers or booleans belong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import StripeError, invalid_request

SCHEMAS: dict[str, dict[str, Any]] = json.loads(Path(__file__).with_name("operations.json").read_text())

_INTEGER = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)$")


class _Mismatch(Exception):
    """A value did not fit one schema; carries the Stripe error it maps to."""

    def __init__(self, error: StripeError):
        self.error = error


def _name(path: list[str]) -> str:
    return path[0] + "".join(f"[{p}]" for p in path[1:])


def _allows_empty(schema: dict[str, Any]) -> bool:
    # Stripe marks "send an empty string to unset" fields as anyOf [..., enum [""]].
    return any(alt.get("enum") == [""] for alt in schema.get("anyOf", ()))


def _coerce(schema: dict[str, Any], value: Any, path: list[str]) -> Any:
    if value == "" and path:
        if _allows_empty(schema) or "" in schema.get("enum", ()):
            return ""
        name = _name(path)
        raise _Mismatch(invalid_request(
            f"You passed an empty string for '{name}'. We assume empty values are an attempt to unset a "
            f"parameter; however '{name}' cannot be unset. You should remove '{name}' from your request or "
            "supply a non-empty value.", param=name, code="parameter_invalid_empty"))
    if "anyOf" in schema:
        first: _Mismatch | None = None
        for alt in schema["anyOf"]:
            if alt.get("enum") == [""]:
                continue
            try:
                return _coerce(alt, value, path)
            except _Mismatch as exc:
                first = first or exc
        assert first is not None
        raise first
    kind = schema.get("type")
    name = _name(path) if path else ""
    if kind == "object" or "properties" in schema:
        return _object(schema, value, path)
    if kind == "array":
        return _array(schema, value, path)
    if isinstance(value, dict):
        raise _Mismatch(invalid_request(f"Invalid {kind or 'value'} for {name}: expected a scalar, got a hash.",
                                        param=name))
    if kind == "integer":
        if not _INTEGER.match(value):
            raise _Mismatch(invalid_request(f"Invalid integer: {value}", param=name,
                                            code="parameter_invalid_integer"))
        return int(value)
    if kind == "number":
        if not _NUMBER.match(value):
            raise _Mismatch(invalid_request(f"Invalid decimal: {value}", param=name))
        return float(value)
    if kind == "boolean":
        if value not in ("true", "false"):
            raise _Mismatch(invalid_request(f"Invalid boolean: {value}", param=name))
        return value == "true"
    if "enum" in schema and value not in schema["enum"]:
        options = schema["enum"]
        listed = ", ".join(options[:-1]) + f", or {options[-1]}" if len(options) > 1 else options[0]
        raise _Mismatch(invalid_request(f"Invalid {path[-1]}: must be one of {listed}", param=name))
    limit = schema.get("maxLength")
    if limit is not None and len(value) > limit:
        raise _Mismatch(invalid_request(
            f"Invalid string: {value[:20]}...; must be at most {limit} characters", param=name))
    return value


def _object(schema: dict[str, Any], value: Any, path: list[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Mismatch(invalid_request("Invalid object", param=_name(path)))
    props = schema.get("properties", {})
    # Without declared properties (e.g. a free-form hash) anything goes unless the schema says otherwise.
    extra = schema.get("additionalProperties", not props)
    out: dict[str, Any] = {}
    for key, sub in value.items():
        sub_schema = props.get(key)
        if sub_schema is None:
            if not isinstance(extra, dict):
                if extra is True:
                    out[key] = sub
                    continue
                name = _name(path + [key])
                raise _Mismatch(invalid_request(f"Received unknown parameter: {name}", param=name,
                                                code="parameter_unknown"))
            if sub == "":
                out[key] = sub  # metadata-style maps: "" deletes the key, always allowed
                continue
            sub_schema = extra
        out[key] = _coerce(sub_schema, sub, path + [key])
    for key in schema.get("required", ()):
        if key not in value:
            name = _name(path + [key])
            raise _Mismatch(invalid_request(f"Missing required param: {name}.", param=name,
                                            code="parameter_missing"))
    return out


def _array(schema: dict[str, Any], value: Any, path: list[str]) -> list[Any]:
    if not isinstance(value, dict) or not all(k.isdigit() for k in value):
        raise _Mismatch(invalid_request("Invalid array", param=_name(path)))
    items = schema.get("items", {})
    return [_coerce(items, value[k], path + [k]) for k in sorted(value, key=int)]


def check(operation: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Validate decoded form params for `operation`; return them typed, or raise StripeError."""
    try:
        return _object(SCHEMAS[operation], raw, [])
    except _Mismatch as exc:
        raise exc.error from None
