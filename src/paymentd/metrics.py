"""Prometheus metrics: every series paymentd exports, defined once at import, and the
few functions the rest of the code calls to move them.

Labels are bounded sets only (route templates, statuses, operations, codes checked
against a pattern); never a payment id, a raw path or anything a caller chooses.

Several processes (`serve --workers N`, `paymentd worker`): `paymentd serve` points
PROMETHEUS_MULTIPROC_DIR at one folder before any process imports this module
(multiproc.py), each process writes its values there,
and `/metrics` adds them up (prometheus_client's multiprocess mode). Values that are a
sample of the moment (job-queue depth and age) are read from PostgreSQL at scrape time
by the process that answers, so they are never summed.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; a payments API answers in tens of ms, Stripe in hundreds.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WAIT = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
# Stripe's `created` has one-second resolution: lags below a second read as 0-1 s.
_LAG = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 259200.0)

HTTP_REQUESTS = Counter(
    "paymentd_http_requests_total", "HTTP requests answered, by route template and status",
    ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "paymentd_http_request_duration_seconds", "Time from request received to response finished",
    ["method", "route"], buckets=_LATENCY)
PAYMENT_MOVES = Counter(
    "paymentd_payment_status_moves_total",
    "Committed payment status moves (from 'none' at creation), by who moved it",
    ["from_status", "to_status", "source"])
DECLINES = Counter(
    "paymentd_payment_declines_total", "Confirm attempts declined, by decline code (else the error code)",
    ["code"])
REFUSED_ATTEMPTS = Counter(
    "paymentd_payment_attempts_refused_total",
    "Confirm attempts Stripe refused as invalid requests (e.g. an unknown payment method): not declines",
    ["code"])
STRIPE_CALLS = Counter(
    "paymentd_stripe_calls_total", "Calls to Stripe by operation and outcome", ["operation", "outcome"])
STRIPE_LATENCY = Histogram(
    "paymentd_stripe_call_duration_seconds", "Duration of calls to Stripe (SDK retries and limiter wait included)",
    ["operation"], buckets=_LATENCY)
LIMITER_WAIT = Histogram(
    "paymentd_stripe_limiter_wait_seconds", "Time a Stripe request waited for the shared rate limit", ["outcome"],
    buckets=_WAIT)
CIRCUIT_OPEN = Gauge(
    "paymentd_stripe_circuit_open", "1 while the Stripe circuit breaker is open (the highest of the live processes)",
    multiprocess_mode="livemax")
CIRCUIT_OPENED = Counter("paymentd_stripe_circuit_opened_total", "Times a process's Stripe circuit breaker opened")
LIMITER_SHARED = Gauge(
    "paymentd_stripe_limiter_shared",
    "1 while Stripe calls are counted in Redis with every process's; 0 while a process limits itself to its "
    "share (Redis lost) or counts alone (no REDIS_URL); the lowest of the live processes",
    multiprocess_mode="livemin")
LIMITER_REDIS_LOST = Counter("paymentd_stripe_limiter_redis_lost_total", "Times a process lost the limiter's Redis")
SHED = Counter(
    "paymentd_requests_shed_total", "Requests answered 503 because the process was at capacity for too long")
WEBHOOK_LAG = Histogram(
    "paymentd_stripe_event_lag_seconds", "From a Stripe event's creation to paymentd closing it (applied or not)",
    ["source"], buckets=_LAG)
OUTBOUND_DELIVERIES = Counter(
    "paymentd_outbound_deliveries_total", "Deliveries to merchants' webhook endpoints, by outcome", ["outcome"])
OUTBOUND_LATENCY = Histogram(
    "paymentd_outbound_delivery_duration_seconds", "Duration of one delivery attempt to a merchant's endpoint",
    buckets=_LATENCY)
OUTBOUND_LAG = Histogram(
    "paymentd_outbound_event_lag_seconds", "From a change to its event reaching the merchant's endpoint",
    buckets=_LAG)
RECONCILER_CORRECTIONS = Counter(
    "paymentd_reconciler_corrections_total", "Changes the reconciler made (audited actions it took)", ["action"])
RECONCILER_MISSED_EVENTS = Counter(
    "paymentd_reconciler_missed_events_total", "Stripe events the reconciler found that never arrived as webhooks")

# Anything a label takes from outside is checked against this, else it becomes "other".
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_SOURCES = {"api_key": "api", "webhook": "webhook", "reconciler": "reconciler"}
OUTBOUND_OUTCOMES = frozenset({"delivered", "failed", "timeout", "gone", "refused_target", "given_up"})


def bounded(code: str | None) -> str:
    """A code from outside as a label: itself when it looks like a code, else 'other'."""
    if not code:
        return "none"
    return code if _CODE.match(code) else "other"


# -- what the code calls ----------------------------------------------------------


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def committed(entries: Iterable[Any]) -> None:
    """Audit entries whose transaction committed (db.py calls this): status moves by
    source, and what the reconciler changed. Counting here means a rolled-back change
    is never counted."""
    for entry in entries:
        action = entry.action
        actor = entry.actor.type
        if action in ("payment.status_changed", "payment.created"):
            status = entry.changes.get("status")
            if status is not None:
                PAYMENT_MOVES.labels(status[0] or "none", status[1], _SOURCES.get(actor, "other")).inc()
        if actor == "reconciler":
            RECONCILER_CORRECTIONS.labels(action).inc()


def declined(code: str | None, count: int = 1) -> None:
    if count > 0:
        DECLINES.labels(bounded(code)).inc(count)


def refused_attempt(code: str | None) -> None:
    REFUSED_ATTEMPTS.labels(bounded(code)).inc()


def stripe_call(operation: str, outcome: str, seconds: float) -> None:
    STRIPE_CALLS.labels(operation, outcome).inc()
    STRIPE_LATENCY.labels(operation).observe(seconds)


def limiter_wait(seconds: float, *, granted: bool) -> None:
    LIMITER_WAIT.labels("granted" if granted else "refused").observe(seconds)


def circuit(opened: bool) -> None:
    """The breaker opened (True) or closed (False) in this process."""
    CIRCUIT_OPEN.set(1 if opened else 0)
    if opened:
        CIRCUIT_OPENED.inc()


def limiter_shared(shared: bool, *, lost: bool = False) -> None:
    """The Stripe limiter counts in Redis (True) or in this process alone (False); `lost`: Redis just failed."""
    LIMITER_SHARED.set(1 if shared else 0)
    if lost:
        LIMITER_REDIS_LOST.inc()


def shed() -> None:
    SHED.inc()


def stripe_event_closed(created: float, source: str) -> None:
    """A Stripe event closed (applied, ignored or refused); `created` is Stripe's Unix time."""
    WEBHOOK_LAG.labels(source if source in ("webhook", "reconciler") else "other").observe(
        max(time.time() - created, 0.0))


def outbound_delivery(outcome: str, seconds: float, *, lag_s: float | None = None) -> None:
    """For the outbound webhooks: one delivery attempt to a merchant's endpoint.

    `outcome`: delivered (2xx), failed (another answer or a network error; retried),
    timeout, gone (410: the endpoint is disabled), refused_target (a private address at
    send time), given_up (the last retry failed). `seconds`: the attempt's duration.
    `lag_s`: for a delivered event, the time from the change it reports to now."""
    OUTBOUND_DELIVERIES.labels(outcome if outcome in OUTBOUND_OUTCOMES else "other").inc()
    OUTBOUND_LATENCY.observe(seconds)
    if lag_s is not None and outcome == "delivered":
        OUTBOUND_LAG.observe(max(lag_s, 0.0))


def reconciler_missed_events(count: int) -> None:
    if count > 0:
        RECONCILER_MISSED_EVENTS.inc(count)


# -- several processes ----------------------------------------------------------------


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def process_exit() -> None:
    """This process stops: its live gauges (the breaker) no longer count."""
    if multiprocess():
        mark_process_dead(os.getpid())


def _forget_dead_processes(folder: str) -> None:
    """A process killed without `process_exit` leaves its live gauges behind: drop them
    (its counters stay, as they should: what it counted happened)."""
    for name in os.listdir(folder):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name.rsplit("_", 1)[-1][:-3]
            if pid.isdigit() and not _alive(int(pid)):
                mark_process_dead(int(pid), folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the scrape -----------------------------------------------------------------------


class _Sampled:
    """Values read at scrape time (not summed across processes)."""

    def __init__(self, families: Sequence[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self.families


def queue_families(depth: dict[str, int], oldest_age_s: float | None) -> list[GaugeMetricFamily]:
    queued = GaugeMetricFamily("paymentd_job_queue_jobs", "Jobs in the queue now, by state "
                               "(due: waiting to run; scheduled: a retry not yet due; doing: running)",
                               labels=["state"])
    for state in ("due", "scheduled", "doing"):
        queued.add_metric([state], depth.get(state, 0))
    age = GaugeMetricFamily("paymentd_job_queue_oldest_age_seconds",
                            "How long the oldest due job has waited (0 when none waits)")
    age.add_metric([], oldest_age_s or 0.0)
    return [queued, age]


def exposition(sampled: Sequence[GaugeMetricFamily] = ()) -> bytes:
    """The text format of every process's values (added up), then the sampled ones."""
    if multiprocess():
        folder = os.environ[MULTIPROC_ENV]
        _forget_dead_processes(folder)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
        out = prometheus_client.generate_latest(registry)
    else:
        out = prometheus_client.generate_latest()
    if sampled:
        extra = CollectorRegistry()
        extra.register(_Sampled(sampled))
        out += prometheus_client.generate_latest(extra)
    return out


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


def _register() -> None:
    from paymentd import db  # imports nothing of ours back: db.py only keeps the list

    if committed not in db.COMMIT_OBSERVERS:
        db.COMMIT_OBSERVERS.append(committed)


_register()
