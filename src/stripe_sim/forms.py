"""Decoding of Stripe's form-encoded bracket syntax.

Stripe clients send `metadata[order]=1`, `payment_method_types[0]=card` and
`expand[]=x`; this turns such pairs into nested dicts of strings. Arrays stay
dicts keyed by index here: only the parameter schema knows whether a nested
key is an array index or a metadata key that happens to be numeric.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl


class FormError(ValueError):
    """A key whose brackets cannot be parsed, or that clashes with another key."""

    def __init__(self, param: str):
        super().__init__(param)
        self.param = param


def _split(key: str) -> list[str]:
    first = key.find("[")
    if first == -1:
        return [key]
    if not key.endswith("]") or first == 0:
        raise FormError(key)
    parts = [key[:first]]
    parts.extend(key[first + 1:-1].split("]["))
    return parts


def decode(raw: bytes | str) -> dict[str, Any]:
    """Decode a urlencoded body or query string into nested dicts of strings."""
    if not raw:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    result: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        if "[" not in key:
            result[key] = value
            continue
        parts = _split(key)
        node = result
        for depth in range(len(parts) - 1):
            part = parts[depth]
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise FormError("[".join(parts[:depth + 1]))
            if parts[depth + 1] == "":
                # `expand[]=a&expand[]=b`: empty brackets append to the array.
                parts[depth + 1] = str(len(child))
            node = child
        node[parts[-1]] = value
    return result
