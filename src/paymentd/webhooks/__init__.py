"""Inbound Stripe events: verify the signature, store each event once in an inbox
(`webhook_events`), and apply it in a background job through the state machine."""
