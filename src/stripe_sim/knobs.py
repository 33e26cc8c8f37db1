"""Run-time knobs: latency, rate limits and injected faults.

All settings live in one `Config` that the command line fills at start and
`/_sim/config` changes at run time; `Faults` and `RateLimiter` read it on
every request so changes apply to the next request.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAULT_KINDS = ("api_error", "lock_timeout", "rate_limit", "drop", "timeout", "drop_after", "timeout_after")


@dataclass
class Config:
    """Every knob, with its default; `/_sim/config` shows and changes these names."""

    latency_ms: float = 0.0                 # median (or fixed) added latency per request
    latency_p99_ms: float | None = None     # when set, latency is lognormal with this p99
    latency_by_operation: dict[str, dict[str, float]] = field(default_factory=dict)
    rate_limit_rps: float = 0.0             # global token bucket; 0 turns it off
    rate_limit_by_operation: dict[str, float] = field(default_factory=dict)
    fault_rates: dict[str, float] = field(default_factory=dict)  # kind -> probability per request
    error_status: int = 500                 # status of injected api_error faults
    hang_s: float = 30.0                    # how long a "timeout" fault holds the connection
    settle_delay_ms: float = 1000.0         # sepa_debit / us_bank_account processing time
    refund_fail_delay_ms: float = 1000.0    # until refunds on 4000000000005126 fail
    dispute_delay_ms: float = 1000.0        # until charges on 4000000000000259 are disputed
    early_fraud_warning_delay_ms: float = 1000.0  # until charges on 4000000000005423 get a warning
    webhook_url: str | None = None          # endpoint registered at start, receives all events
    webhook_secret: str | None = None
    webhook_delay_ms: float = 0.0
    webhook_duplicate_rate: float = 0.0     # probability an event is delivered twice
    webhook_reorder_window_ms: float = 0.0  # >0: collect events this long, deliver newest first
    webhook_retry_base_ms: float = 500.0    # first retry delay; doubles per attempt
    webhook_max_attempts: int = 5
    webhook_timeout_s: float = 10.0
    webhook_trust_file: str | None = None   # PEM certificates trusted as they are for https endpoints
    request_log_limit: int = 10_000
    hot_objects: int = 10_000               # per type kept as dicts; older ones are stored packed
    idempotency_ttl_s: float = 24 * 3600.0  # Stripe prunes keys after 24 hours
    seed: int | None = None
    state_file: str | None = None           # keep the state here across restarts (persist.py)
    save_interval_s: float = 1.0            # at most this often after a change, and at shutdown

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update, refusing unknown knobs and bad values."""
        known = {f.name: f for f in fields(self)}
        for key in changes:
            if key not in known:
                raise ValueError(f"unknown knob: {key}")
        for kind in changes.get("fault_rates", {}):
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind: {kind}")
        for key, value in changes.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lognormal_ms(rng: random.Random, median: float, p99: float | None) -> float:
    if not p99 or p99 <= median or median <= 0:
        return median
    # p99 of a lognormal is median * exp(2.326 * sigma).
    sigma = math.log(p99 / median) / 2.3263
    return rng.lognormvariate(math.log(median), sigma)


class Faults:
    """Decides per request which fault (if any) to inject: queued next-N faults first, then rates."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.queued: list[dict[str, Any]] = []

    def add(self, kind: str, count: int = 1, operation: str | None = None, status: int | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind: {kind}")
        self.queued.append({"kind": kind, "count": count, "operation": operation, "status": status})

    def pick(self, operation: str) -> dict[str, Any] | None:
        for fault in self.queued:
            if fault["operation"] in (None, operation):
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.queued.remove(fault)
                return fault
        for kind, rate in self.config.fault_rates.items():
            if rate and self.rng.random() < rate:
                return {"kind": kind, "status": None}
        return None

    def latency_s(self, operation: str) -> float:
        spec = self.config.latency_by_operation.get(operation)
        if spec is not None:
            ms = _lognormal_ms(self.rng, spec.get("latency_ms", 0.0), spec.get("latency_p99_ms"))
        else:
            ms = _lognormal_ms(self.rng, self.config.latency_ms, self.config.latency_p99_ms)
        return ms / 1000.0


class RateLimiter:
    """Token buckets: one global, one per operation, refilled continuously."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def _take(self, key: str, rate: float) -> bool:
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)  # burst of one second's worth
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1.0, now)
        return True

    def allow(self, operation: str) -> bool:
        per_op = self.config.rate_limit_by_operation.get(operation)
        if per_op and not self._take(operation, per_op):
            return False
        rate = self.config.rate_limit_rps
        return not rate or self._take("*", rate)
