"""The names a rule's condition may read, their types, and the stages that know them.

A condition is type-checked against this catalogue when it is saved, so a rule
never meets an unknown name or a wrong type at payment time. Values are never
null: an unknown string is "" and an unknown count 0, so comparisons cannot fail.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rule_engine import DataType

CREATE, CONFIRM, POST_AUTH = "create", "confirm", "post_auth"
STAGES = (CREATE, CONFIRM, POST_AUTH)

# Keys the velocity counters are kept per (velocity.py), and what they count.
KINDS = ("user", "email", "ip", "card")
METRICS = ("attempts", "declines", "successes", "amount")
# Window name -> minutes. Counters are kept in one-minute buckets: a window of N
# minutes covers the current minute and the N-1 before it.
WINDOWS = {"1m": 1, "10m": 10, "1h": 60, "24h": 1440}

_STRING, _NUMBER, _BOOL = DataType.STRING, DataType.FLOAT, DataType.BOOLEAN

# Known at every stage: the payment and its payer.
_PAYMENT = {
    "amount": _NUMBER,          # in the currency's major unit, exact (19.99)
    "amount_minor": _NUMBER,    # in minor units (1999)
    "currency": _STRING,        # lower case, ISO 4217
    "user_id": _STRING,
    "email": _STRING,           # the user's, lower case; "" when the user has none
    "email_domain": _STRING,
    "is_first_payment": _BOOL,  # the user has no earlier payment that received money
    "capture_method": _STRING,
}
# Known from confirm on: the payer's device (as the caller says) and the card.
_CONFIRM = {
    "ip_address": _STRING,      # "" when the caller did not send it
    "ip_country": _STRING,      # ISO 3166 alpha-2 from the IP table (geo.py); "" unknown
    "user_agent": _STRING,
    "payment_method_type": _STRING,
    "card_fingerprint": _STRING,
    "card_country": _STRING,
    "card_bin": _STRING,        # only where the processor exposes it (Stripe: card.iin); else ""
    "card_brand": _STRING,
    "card_funding": _STRING,
    "attempt_number": _NUMBER,  # this payment's confirm attempts so far, this one included
    **{f"{kind}_{metric}_{window}": _NUMBER for kind in KINDS for metric in METRICS for window in WINDOWS},
    **{f"{kind}_declines_in_row": _NUMBER for kind in KINDS},
}
# Known after an authorization: Radar's verdict.
_POST_AUTH = {
    "radar_risk_level": _STRING,  # normal | elevated | highest | not_assessed | unknown
    "radar_risk_score": _NUMBER,  # 0-100; -1 when Radar gave none
}

TYPES: dict[str, Any] = {**_PAYMENT, **_CONFIRM, **_POST_AUTH}
FIRST_STAGE = {**dict.fromkeys(_PAYMENT, CREATE), **dict.fromkeys(_CONFIRM, CONFIRM),
               **dict.fromkeys(_POST_AUTH, POST_AUTH)}
CARD_INPUTS = frozenset(name for name in _CONFIRM if name.startswith(("card_", "payment_method_type")))
LIST_PREFIX = "list_"  # a rule set's named lists are read as `list_<name>` (sets of strings)


def blank(stage: str) -> dict[str, Any]:
    """Every input a stage knows, at its 'unknown' value."""
    values: dict[str, Any] = {}
    for name, kind in TYPES.items():
        if STAGES.index(FIRST_STAGE[name]) > STAGES.index(stage):
            continue
        values[name] = "" if kind is _STRING else False if kind is _BOOL else Decimal(0)
    if stage == POST_AUTH:
        values["radar_risk_score"] = Decimal(-1)
    return values
