"""Opaque keyset cursors for paged lists (the audit trail; payment history keeps its
stricter time-aware decoder in payments/repository.py): the last row's sort key as
base64url JSON; anything else is a 400."""

from __future__ import annotations

import base64
import json
from typing import Any

from paymentd.errors import InvalidRequest


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The values of a cursor this API returned; a 400 for anything else."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, RecursionError) as error:  # binascii/Unicode errors are ValueErrors
        raise bad_cursor() from error
    if not isinstance(raw, dict):
        raise bad_cursor()
    return raw


def bad_cursor() -> InvalidRequest:
    return InvalidRequest("The cursor is not one this API returned.", code="parameter_invalid", param="cursor")
