"""paymentd: a payments service between a merchant's applications and Stripe."""

__version__ = "0.1.0"
