"""Pydantic validation failures in the contract's terms (Stripe's codes), one place.

The offending input is never echoed back: it could be a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paymentd.errors import InvalidRequest

_CODES = {
    "missing": "parameter_missing",
    "extra_forbidden": "parameter_unknown",
    "json_invalid": "body_invalid_json",
    "model_attributes_type": "body_invalid",
    "dict_type": "parameter_invalid",
    "string_too_long": "parameter_invalid_string_too_long",
    "string_too_short": "parameter_invalid_empty",
    "too_short": "parameter_invalid_empty",
    "string_pattern_mismatch": "parameter_invalid",
    "uuid_parsing": "parameter_invalid_uuid",
    "uuid_type": "parameter_invalid_uuid",
    "int_parsing": "parameter_invalid_integer",
    "literal_error": "parameter_invalid",
}


# What a field with a pattern expects, in words (the last part of its location).
_EMAIL = "Give an email address, such as ann@example.com."
_FORMATS = {
    "email": _EMAIL,
    "receipt_email": _EMAIL,
    "payment_method": "Give a Stripe payment method id, such as pm_card_visa (pm_ and letters, digits or _).",
    "pm_id": "Give a Stripe payment method id, such as pm_card_visa (pm_ and letters, digits or _).",
    "return_url": "Give an http:// or https:// URL.",
}


def validation_error(errors: Sequence[Any]) -> InvalidRequest:
    first = errors[0] if errors else {"type": "invalid", "loc": (), "msg": "Invalid request."}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    # Union members add their type name to the location; it means nothing to a caller.
    loc = [part for part in loc if not part.startswith(("str", "int", "decimal", "function-", "constrained"))]
    if loc[-1:] == ["[key]"]:
        # A bad metadata key: name the object, not the (possibly secret) key text.
        loc = loc[:-2]
    param = ".".join(loc) or None
    code = _CODES.get(first.get("type", ""), "parameter_invalid")
    if first.get("type") == "json_invalid":
        param = None
    message = first.get("msg", "Invalid request.")
    if first.get("type") == "string_pattern_mismatch":
        # Pydantic's message shows the regular expression: say what is expected instead.
        message = _FORMATS.get(loc[-1] if loc else "", "This value does not have the expected format.")
    if param:
        message = f"{message} ({param})"
    return InvalidRequest(message, code=code, param=param)
