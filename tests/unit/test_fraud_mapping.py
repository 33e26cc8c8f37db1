"""Radar's objects into paymentd's neutral types (providers/stripe.py) and through the inbox codec."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paymentd.providers.base import ProviderEvent, ProviderFraudWarning, ProviderReview, RiskAssessment
from paymentd.providers.stripe import to_fraud_warning, to_provider_event, to_provider_payment, to_provider_review, to_risk
from paymentd.webhooks.codec import event_from_json, event_to_json

PI = {"id": "pi_1", "object": "payment_intent", "status": "succeeded", "amount": 1000, "currency": "usd",
      "review": "prv_1", "latest_charge": {"id": "ch_1", "outcome": {
          "type": "manual_review", "risk_level": "elevated", "risk_score": 68, "reason": "elevated_risk_level",
          "rule": "manual_review_if_elevated_risk"}}}


def test_the_expanded_charge_outcome_becomes_the_payments_risk() -> None:
    payment = to_provider_payment(PI)
    assert payment.risk == RiskAssessment("elevated", 68, "manual_review", "elevated_risk_level",
                                          "manual_review_if_elevated_risk")
    assert payment.review == "prv_1" and not payment.risk.blocked


def test_no_expanded_charge_means_no_verdict_not_a_normal_one() -> None:
    assert to_provider_payment({**PI, "latest_charge": "ch_1"}).risk is None
    assert to_risk({"id": "ch_1"}) is None


@pytest.mark.parametrize("outcome, expected", [
    ({"type": "invalid", "risk_level": "bogus", "risk_score": 300}, RiskAssessment("unknown", None, None)),
    ({"type": "blocked", "risk_level": "highest", "risk_score": True}, RiskAssessment("highest", None, "blocked")),
    ({"type": "authorized", "risk_level": "not_assessed"}, RiskAssessment("not_assessed", None, "authorized")),
    ({"type": "blocked", "risk_level": "highest", "risk_score": 95, "rule": {"id": "rule_x", "action": "block"},
      "reason": "rule"}, RiskAssessment("highest", 95, "blocked", "rule", "rule_x")),
    ({"type": ["x"], "risk_level": None, "reason": 7}, RiskAssessment("unknown", None, None)),
])
def test_odd_or_hostile_outcomes_never_break_and_stay_in_the_contract(outcome, expected) -> None:
    assert to_risk({"outcome": outcome}) == expected


def test_review_and_warning_events_are_neutral_and_survive_the_inbox() -> None:
    review = {"id": "prv_1", "object": "review", "payment_intent": "pi_1", "open": False, "opened_reason": "rule",
              "closed_reason": "approved", "created": 1_700_000_000, "billing_zip": "12345", "ip_address": "1.2.3.4"}
    warning = {"id": "issfr_1", "object": "radar.early_fraud_warning", "payment_intent": "pi_1", "charge": "ch_1",
               "fraud_type": "made_with_stolen_card", "actionable": True, "created": 1_700_000_000}
    for obj, cls in ((review, ProviderReview), (warning, ProviderFraudWarning)):
        event = to_provider_event({"id": "evt_1", "type": "x", "created": 1_700_000_000, "livemode": False,
                                   "data": {"object": obj}})
        assert isinstance(event.object, cls) and event.payment_intent_id == "pi_1"
        assert event_from_json(event_to_json(event)) == event
    assert to_provider_review(review).closed_reason == "approved"
    assert "12345" not in str(event_to_json(to_provider_event({"id": "e", "type": "review.closed", "created": 1,
                                                                  "data": {"object": review}})))
    assert to_fraud_warning({**warning, "actionable": "yes"}).actionable is False  # only a real true is true


def test_payment_risk_survives_the_inbox() -> None:
    event = ProviderEvent("evt_2", "payment_intent.succeeded", datetime.now(UTC), "payment_intent",
                          to_provider_payment(PI), False, "pi_1")
    assert event_from_json(event_to_json(event)).object.risk == event.object.risk
