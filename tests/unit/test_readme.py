"""The README tells operators which Stripe events to subscribe to; it must stay the
list the reconciler and the inbox actually apply."""

import re
from pathlib import Path

from paymentd.jobs.reconciler import PAYMENT_EVENT_TYPES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_exactly_the_event_types_paymentd_applies():
    going_live = README.read_text().split("## Going live", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"\b(?:payment_intent|refund|charge\.refund|charge\.dispute|review|radar\.early_fraud_warning)\.[a-z_]+\b", going_live))
    assert listed == set(PAYMENT_EVENT_TYPES)
