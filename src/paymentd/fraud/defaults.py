"""The rules an account has before it saves any (version 0): card-testing protection
and Radar's `highest` risk blocked after authorization.

They are ordinary rules: GET /api/fraud/rules shows them, and a PUT without them
turns them off (a PUT of `{"rules": []}` runs no rules at all).
"""

from __future__ import annotations

from typing import Any

# Ten declines in ten minutes from one client IP, one user or one card: a card-testing
# attack (or a payer who will not get through); nothing more is sent to Stripe for it.
# The IP rule comes first: it needs no card lookup, so a blocked attempt costs Stripe nothing.
CARD_TESTING_DECLINES = 10

RULES: list[dict[str, Any]] = [
    {"id": "default_card_testing_ip", "action": "block",
     "condition": f'ip_address != "" and ip_declines_10m >= {CARD_TESTING_DECLINES}'},
    {"id": "default_card_testing_user", "action": "block",
     "condition": f"user_declines_10m >= {CARD_TESTING_DECLINES}"},
    {"id": "default_card_testing_card", "action": "block",
     "condition": f'card_fingerprint != "" and card_declines_10m >= {CARD_TESTING_DECLINES}'},
    {"id": "default_radar_highest", "action": "block", "condition": 'radar_risk_level == "highest"'},
]


def body() -> dict[str, Any]:
    return {"rules": [dict(rule) for rule in RULES], "lists": {}}
