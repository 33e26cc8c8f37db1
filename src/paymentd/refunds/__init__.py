"""Refunds of captured payments: reserved in PostgreSQL, then sent to Stripe."""
