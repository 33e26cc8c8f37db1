"""Stripe Radar's verdict on a charge: the `outcome` hash, as Stripe fills it.

Radar scores card payments (and ACH / SEPA debits); the test instrument's
`Behaviour` says which risk level it gets and whether a rule blocked it or
queued it for review. Issuer declines keep Radar's normal score and carry
the bank's decline code. Values follow docs.stripe.com/radar/risk-evaluation.
"""

from __future__ import annotations

from typing import Any

from .testcards import Behaviour, Decline

# Radar's score for each level: a fixed, representative value inside the level's band.
RISK_SCORES = {"normal": 32, "elevated": 68, "highest": 95}
_NO_ADVICE = {"advice_code": None, "network_advice_code": None, "network_decline_code": None}

AUTHORIZED = {**_NO_ADVICE, "network_status": "approved_by_network", "reason": None, "risk_level": "normal",
              "risk_score": RISK_SCORES["normal"], "seller_message": "Payment complete.", "type": "authorized"}
# Payment methods Radar does not assess (bank redirects): no score at all.
NOT_ASSESSED = {**_NO_ADVICE, "network_status": "approved_by_network", "reason": None,
                "risk_level": "not_assessed", "seller_message": "Payment complete.", "type": "authorized"}
_ASSESSED_TYPES = ("card", "sepa_debit", "us_bank_account")

BLOCKED_FRAUD_DETAILS = {"stripe_report": "fraudulent"}


def _scored(behaviour: Behaviour) -> dict[str, Any]:
    outcome = {**AUTHORIZED, "risk_level": behaviour.risk_level, "risk_score": RISK_SCORES[behaviour.risk_level]}
    if behaviour.radar_rule:
        outcome["rule"] = behaviour.radar_rule  # the spec's `rule` is absent, never null, when none matched
    return outcome


def approved(pm_type: str, behaviour: Behaviour) -> dict[str, Any]:
    """An authorized payment: normal risk, or elevated and queued for manual review."""
    if pm_type not in _ASSESSED_TYPES:
        return NOT_ASSESSED
    if behaviour.risk_level == "normal" and not behaviour.radar_rule:
        return AUTHORIZED
    outcome = _scored(behaviour)
    if behaviour.review:
        outcome.update(type="manual_review", reason=f"{behaviour.risk_level}_risk_level",
                       seller_message="Stripe evaluated this payment as having elevated risk, and placed it in "
                                      "your manual review queue.")
    return outcome


def declined(decline: Decline, behaviour: Behaviour | None) -> dict[str, Any]:
    """A failed card payment: blocked by Radar before the network, or declined by the issuer."""
    if behaviour is not None and behaviour.risk_level == "highest":
        return {**_scored(behaviour), "network_status": "not_sent_to_network", "reason": "highest_risk_level",
                "seller_message": "Stripe blocked this payment as too risky.", "type": "blocked"}
    reason = decline.decline_code or decline.code
    message = ("The bank did not return any further details with this decline." if reason == "generic_decline"
               else f"The bank returned the decline code `{reason}`.")
    return {**AUTHORIZED, "network_status": "declined_by_network", "reason": reason, "seller_message": message,
            "type": "issuer_declined"}


def is_blocked(outcome: dict[str, Any] | None) -> bool:
    return outcome is not None and outcome["type"] == "blocked"
