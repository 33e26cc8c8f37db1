"""Disputes (chargebacks): Stripe's `charge.dispute.*` events recorded per payment, and
the payment moved to `disputed` and back through the state machine."""
