"""Stripe's resources, one module each: handlers plus the state changes behind them.

Handlers take `(sim, ctx, params, *path_ids)` with already-checked params,
return the Stripe object to answer with, or raise `StripeError`.
"""
