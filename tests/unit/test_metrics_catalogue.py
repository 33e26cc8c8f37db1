"""The shipped Grafana dashboard and Prometheus alerts name only series paymentd exports,
and label values from outside stay bounded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from paymentd import metrics

ROOT = Path(__file__).resolve().parents[2]
SAMPLED = {"paymentd_job_queue_jobs", "paymentd_job_queue_oldest_age_seconds"}  # read at scrape time


def exported() -> set[str]:
    names = set(SAMPLED)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    for family in REGISTRY.collect():  # a labelled series with no value yet has no samples
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def used(text: str) -> set[str]:
    return set(re.findall(r"\bpaymentd_[a-z_]+", text))


def test_dashboard_uses_only_exported_series() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/paymentd.json").read_text())
    expressions = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    assert used(expressions) and used(expressions) <= exported(), used(expressions) - exported()


def test_alerts_use_only_exported_series() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    expressions = " ".join(rule["expr"] for rule in rules)
    assert {r["alert"] for r in rules} >= {"PaymentdSuccessRateDrop", "PaymentdStripeCircuitOpen",
                                            "PaymentdJobQueueBehind", "PaymentdStripeEventLag"}
    assert used(expressions) <= exported(), used(expressions) - exported()


def test_codes_from_outside_become_bounded_labels() -> None:
    assert metrics.bounded("insufficient_funds") == "insufficient_funds"
    assert metrics.bounded(None) == "none"
    for hostile in ("pi_3Qx/../../x", "Insufficient Funds", "x" * 100, "a\nb", "4242424242424242"):
        assert metrics.bounded(hostile) == "other"
