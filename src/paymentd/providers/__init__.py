"""Payment processors behind one protocol; the rest of paymentd imports from here.

Only the neutral types are re-exported: `providers.stripe` (which imports the Stripe SDK)
is imported by whoever builds the provider, so nothing else pulls Stripe in by accident.
"""

from paymentd.providers.base import (
    CardDetails,
    PaymentError,
    PaymentMethodInfo,
    PaymentProvider,
    ProviderAuthError,
    ProviderDeclined,
    ProviderError,
    ProviderEvent,
    ProviderIdempotencyError,
    ProviderInvalidRequest,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    ProviderUnavailable,
    UnavailableKind,
    WebhookSignatureError,
)

__all__ = [
    "CardDetails",
    "PaymentError",
    "PaymentMethodInfo",
    "PaymentProvider",
    "ProviderAuthError",
    "ProviderDeclined",
    "ProviderError",
    "ProviderEvent",
    "ProviderIdempotencyError",
    "ProviderInvalidRequest",
    "ProviderPayment",
    "ProviderRefund",
    "ProviderStatus",
    "ProviderUnavailable",
    "UnavailableKind",
    "WebhookSignatureError",
]
