"""Stripe's documented test cards, tokens and bank accounts, and what each one does.

Stripe decides a payment's fate from the card number (or IBAN / account
number); the simulator does the same. `Behaviour` is what the payment engine
reads; the tables below are transcribed from Stripe's testing documentation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decline:
    """What the issuer or bank answers: Stripe's error code, decline code and message."""

    code: str
    decline_code: str | None
    message: str


@dataclass(frozen=True)
class Behaviour:
    """How payments with one test instrument end."""

    outcome: str = "succeed"          # succeed | decline | authenticate | redirect | delayed
    decline: Decline | None = None    # for decline, and for delayed methods that fail
    attach_fails: bool = False        # declines already when attached to a customer
    auth_unless_saved: bool = False   # 3DS needed unless saved to a customer and used off-session
    refund_fails: bool = False        # refunds are created, then fail later (refund.failed)
    disputed: bool = False            # a dispute is opened soon after the charge succeeds
    # What Radar makes of the payment (see radar.py): its risk level, the rule that acted on it,
    # whether it opens a review, and whether the issuer sends an early fraud warning after capture.
    risk_level: str = "normal"
    radar_rule: str | None = None
    review: bool = False
    early_fraud_warning: bool = False


@dataclass(frozen=True)
class Card:
    """A test card number, its brand and funding, and its behaviour."""

    number: str
    brand: str
    funding: str = "credit"
    country: str = "US"
    behaviour: Behaviour = Behaviour()

    @property
    def last4(self) -> str:
        return self.number[-4:]


GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")
_DECLINED = Behaviour("decline", GENERIC, attach_fails=True)


def _declines(code: str, decline_code: str | None, message: str) -> Behaviour:
    return Behaviour("decline", Decline(code, decline_code, message), attach_fails=True)


# Radar's block: the issuer is never asked; Stripe answers with decline code `fraudulent`.
FRAUDULENT = Decline("card_declined", "fraudulent", "Your card was declined.")
RADAR_BLOCK = Behaviour("decline", FRAUDULENT, attach_fails=True, risk_level="highest")
# Blocked by Radar's default rule "Block if :risk_level: = 'highest'" (documented as settings-dependent).
HIGHEST_RISK = Behaviour("decline", FRAUDULENT, risk_level="highest", radar_rule="block_if_high_risk")
# Allowed, then queued for manual review by Radar for Fraud Teams' default review rule.
ELEVATED_RISK = Behaviour(risk_level="elevated", radar_rule="manual_review_if_elevated_risk", review=True)

AUTH_REQUIRED = Decline("authentication_required", "authentication_required",
                        "Your card was declined. This transaction requires authentication.")

CARDS = {c.number: c for c in [
    Card("4242424242424242", "visa"),
    Card("4000056655665556", "visa", funding="debit"),
    Card("5555555555554444", "mastercard"),
    Card("2223003122003222", "mastercard"),
    Card("5200828282828210", "mastercard", funding="debit"),
    Card("378282246310005", "amex"),
    Card("371449635398431", "amex"),
    Card("6011111111111117", "discover"),
    Card("4000000000000002", "visa", behaviour=_DECLINED),
    Card("4000000000009995", "visa", behaviour=_declines(
        "card_declined", "insufficient_funds", "Your card has insufficient funds.")),
    Card("4000000000009987", "visa", behaviour=_declines("card_declined", "lost_card", "Your card was declined.")),
    Card("4000000000009979", "visa", behaviour=_declines("card_declined", "stolen_card", "Your card was declined.")),
    Card("4000000000000069", "visa", behaviour=_declines("expired_card", "expired_card", "Your card has expired.")),
    Card("4000000000000127", "visa", behaviour=_declines(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")),
    Card("4000000000000119", "visa", behaviour=_declines(
        "processing_error", "processing_error",
        "An error occurred while processing your card. Try again in a little bit.")),
    Card("4000000000006975", "visa", behaviour=_declines(
        "card_declined", "card_velocity_exceeded",
        "Your card was declined for making repeated attempts too frequently or exceeding its amount limit.")),
    Card("4100000000000019", "visa", behaviour=RADAR_BLOCK),
    Card("4000000000004954", "visa", behaviour=HIGHEST_RISK),
    Card("4000000000009235", "visa", behaviour=ELEVATED_RISK),
    Card("4000000000005423", "visa", behaviour=Behaviour(early_fraud_warning=True)),
    Card("4000000000000341", "visa", behaviour=Behaviour("decline", GENERIC)),
    Card("4000000000003220", "visa", behaviour=Behaviour("authenticate")),
    Card("4000002760003184", "visa", behaviour=Behaviour("authenticate")),
    Card("4000002500003155", "visa", behaviour=Behaviour("authenticate", auth_unless_saved=True)),
    Card("4000000000005126", "visa", behaviour=Behaviour(refund_fails=True)),
    Card("4000000000000259", "visa", behaviour=Behaviour(disputed=True)),
]}

# Stripe's test PaymentMethod ids and card tokens, by the card they stand for.
_TOKENS = {
    "visa": "4242424242424242", "visa_debit": "4000056655665556", "mastercard": "5555555555554444",
    "mastercard_debit": "5200828282828210", "amex": "378282246310005", "discover": "6011111111111117",
    "chargeDeclined": "4000000000000002", "chargeDeclinedInsufficientFunds": "4000000000009995",
    "chargeDeclinedLostCard": "4000000000009987", "chargeDeclinedStolenCard": "4000000000009979",
    "chargeDeclinedExpiredCard": "4000000000000069", "chargeDeclinedIncorrectCvc": "4000000000000127",
    "chargeDeclinedProcessingError": "4000000000000119", "chargeDeclinedFraudulent": "4100000000000019",
    "chargeCustomerFail": "4000000000000341", "threeDSecure2Required": "4000000000003220",
    "authenticationRequired": "4000002760003184", "authenticationRequiredOnSetup": "4000002500003155",
    "refundFail": "4000000000005126", "createDispute": "4000000000000259",
    "chargeDeclinedVelocityLimitExceeded": "4000000000006975",
    "radarBlock": "4100000000000019", "riskLevelHighest": "4000000000004954", "riskLevelElevated": "4000000000009235",
    "createIssuerFraudRecord": "4000000000005423",
}
# Stripe documents most decline ids in a `visa_` form too (pm_card_visa_chargeDeclinedInsufficientFunds);
# both spellings name the same card.
_TOKENS.update({f"visa_{name}": number for name, number in list(_TOKENS.items())
                if name.startswith("chargeDeclined")})
TEST_PAYMENT_METHODS = {f"pm_card_{name}": CARDS[number] for name, number in _TOKENS.items()}
TEST_TOKENS = {f"tok_{name}": CARDS[number] for name, number in _TOKENS.items()}

# Debits that settle later: what the bank eventually says, by IBAN or account number.
_BANK_FAILS = {
    "DE62370400440532013001": Decline("insufficient_funds", None,
                                      "The customer's account has insufficient funds to cover this payment."),
    "AT861904300235473202": Decline("insufficient_funds", None,
                                    "The customer's account has insufficient funds to cover this payment."),
    "000111111113": Decline("account_closed", None, "The customer's bank account has been closed."),
    "000111111116": Decline("no_account", None, "The customer's bank account could not be located."),
    "000222222227": Decline("insufficient_funds", None,
                            "The customer's account has insufficient funds to cover this payment."),
    "000333333335": Decline("debit_not_authorized", None, "The customer has notified their bank that this "
                            "payment was unauthorized."),
}


def bank_behaviour(account: str) -> Behaviour:
    """Behaviour of a sepa_debit IBAN or us_bank_account number: settles later, or fails later."""
    decline = _BANK_FAILS.get(account)
    return Behaviour("delayed", decline)


REDIRECT = Behaviour("redirect")


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0
