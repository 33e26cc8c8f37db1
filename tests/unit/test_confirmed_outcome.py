"""sync.confirmed_outcome: what Stripe's report says an open confirm attempt came to.
The API path, webhooks and the reconciler all close attempts by it."""

from __future__ import annotations

import pytest

from paymentd.payments.sync import AttemptOutcome, confirmed_outcome
from paymentd.providers.base import PaymentError, ProviderPayment, ProviderStatus

DECLINE = PaymentError(code="card_declined", decline_code="insufficient_funds", message="Your card has insufficient funds.",
                       payment_method="pm_x", type="card_error")


def intent(status: ProviderStatus, last_error: PaymentError | None = None) -> ProviderPayment:
    return ProviderPayment(
        id="pi_1", status=status, amount=1000, currency="usd", amount_received=0, amount_capturable=0,
        client_secret=None, payment_method=None, payment_method_types=("card",), capture_method="automatic",
        next_action=None, last_error=last_error, latest_charge=None, payment_method_details=None, customer=None,
        metadata={},
    )


@pytest.mark.parametrize(
    "status",
    [ProviderStatus.succeeded, ProviderStatus.processing, ProviderStatus.requires_capture,
     ProviderStatus.requires_action, ProviderStatus.canceled],
)
def test_a_status_past_confirmation_is_the_outcome(status: ProviderStatus) -> None:
    assert confirmed_outcome(intent(status)) == AttemptOutcome(status.value)


def test_back_to_requires_payment_method_with_an_error_is_a_failure_with_its_codes() -> None:
    assert confirmed_outcome(intent(ProviderStatus.requires_payment_method, DECLINE)) == AttemptOutcome(
        "failed", "card_declined", "insufficient_funds", "Your card has insufficient funds."
    )


@pytest.mark.parametrize(
    "report",
    [intent(ProviderStatus.requires_confirmation), intent(ProviderStatus.requires_payment_method),
     intent(ProviderStatus.unknown)],
    ids=["requires_confirmation", "requires_payment_method without an error", "unknown"],
)
def test_no_confirmation_seen_yet_closes_nothing(report: ProviderPayment) -> None:
    assert confirmed_outcome(report) is None
