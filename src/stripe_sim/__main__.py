"""Command line: `python -m stripe_sim` / `stripe-sim`, every knob settable by flag.

Flags cover the common knobs; `--config '{"...": ...}'` takes any knob as
JSON (the same keys as `POST /_sim/config`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .server import run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stripe-sim", description="Stripe API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=12111)
    p.add_argument("--latency-ms", type=float, help="median (or fixed) latency added to every API request")
    p.add_argument("--latency-p99-ms", type=float, help="p99 latency; makes latency lognormal")
    p.add_argument("--rate-limit", type=float, dest="rate_limit_rps", help="requests per second, global")
    p.add_argument("--error-rate", type=float, help="probability of an injected 5xx per request")
    p.add_argument("--drop-rate", type=float, help="probability of a dropped connection per request")
    p.add_argument("--timeout-rate", type=float, help="probability of a request that hangs, then drops")
    p.add_argument("--settle-delay-ms", type=float, help="sepa_debit / us_bank_account processing time")
    p.add_argument("--webhook-url", help="register an endpoint receiving every event")
    p.add_argument("--webhook-secret", help="signing secret for --webhook-url (whsec_...)")
    p.add_argument("--webhook-delay-ms", type=float)
    p.add_argument("--webhook-duplicate-rate", type=float)
    p.add_argument("--webhook-reorder-window-ms", type=float)
    p.add_argument("--seed", type=int, help="seed for latency and fault randomness")
    p.add_argument("--state-file", help="keep the simulator's objects in this file across restarts")
    p.add_argument("--config", type=json.loads, default={}, help="any knobs as a JSON object")
    p.add_argument("--log-level", default="info")
    return p


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    rates = {}
    for flag, kind in (("error_rate", "api_error"), ("drop_rate", "drop"), ("timeout_rate", "timeout")):
        if getattr(args, flag) is not None:
            rates[kind] = getattr(args, flag)
    if rates:
        options["fault_rates"] = rates
    for name in ("latency_ms", "latency_p99_ms", "rate_limit_rps", "settle_delay_ms", "webhook_url",
                 "webhook_secret", "webhook_delay_ms", "webhook_duplicate_rate", "webhook_reorder_window_ms",
                 "seed", "state_file"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    options.update(args.config)
    return options


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    run(args.host, args.port, options_from(args), args.log_level)


if __name__ == "__main__":
    main()
