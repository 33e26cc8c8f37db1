"""Outbound webhooks without I/O: the address classes the SSRF guard refuses, URL
parsing, the retry schedule's span, signatures and the event types."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from paymentd.config import Settings
from paymentd.outbound import signing, targets
from paymentd.outbound.delivery import retry_delay, signing_secrets
from paymentd.outbound.models import WebhookEndpoint
from paymentd.outbound.types import EVENT_TYPES, payment_event_type


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.9.9", "::1", "10.0.0.1", "172.31.255.255", "192.168.1.1",
                                     "169.254.169.254", "fd00:ec2::254", "fe80::1", "100.64.0.1", "100.127.255.254",
                                     "224.0.0.251", "ff02::1", "0.0.0.0", "::", "::ffff:10.0.0.1", "fc00::1",
                                     "192.0.2.1", "240.0.0.1", "not-an-ip"])
def test_refused_addresses(address):
    assert targets.refused_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "100.128.0.1"])
def test_public_addresses_pass(address):
    assert targets.refused_address(address) is None


@pytest.mark.parametrize("url", ["ftp://x.example/", "https://u:p@x.example/", "https://u@x.example/",
                                 "https:///nohost", "https://x.example/a#frag", "https://x.example:99999/",
                                 "https://x.example/a b", "http://x.example/", "javascript:alert(1)",
                                 "https://x.example/" + "a" * 3000])
def test_bad_urls(url):
    with pytest.raises(targets.TargetRefused):
        targets.parse(url, allow_private=False)


def test_http_allowed_only_with_private_targets():
    target = targets.parse("http://Hooks.Example:8080/in?x=1", allow_private=True)
    assert (target.scheme, target.host, target.port, target.path) == ("http", "hooks.example", 8080, "/in?x=1")
    assert target.host_header() == "hooks.example:8080"
    assert targets.parse("https://[::1]/", allow_private=True).host_header() == "[::1]"


def test_retries_span_about_three_days_with_the_defaults():
    settings = Settings()
    random.seed(7)
    elapsed, attempts = 0.0, 0
    while elapsed <= settings.webhooks_give_up_after_s:
        attempts += 1
        delay = retry_delay(settings, attempts)
        ceiling = min(settings.webhooks_retry_cap_s, settings.webhooks_retry_base_s * 2 ** (attempts - 1))
        assert ceiling / 2 <= delay <= ceiling  # jittered, never above the curve
        elapsed += delay
    assert 15 <= attempts <= 40
    assert retry_delay(settings, 1) <= 5 and retry_delay(settings, 200) <= settings.webhooks_retry_cap_s


def test_signature_verifies_with_standardwebhooks_and_overlap_expires():
    secret = signing.new_secret()
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    now = datetime.now(UTC)
    body = b'{"id":"evt_1","type":"payment.created"}'
    header = signing.signature_header([secret], "evt_1", int(now.timestamp()), body)
    Webhook(secret).verify(body, {"webhook-id": "evt_1", "webhook-timestamp": str(int(now.timestamp())),
                                  "webhook-signature": header})
    endpoint = WebhookEndpoint(secret="new", previous_secret="old", previous_secret_expires_at=now + timedelta(hours=1))
    assert signing_secrets(endpoint, now) == ["new", "old"]
    assert signing_secrets(endpoint, now + timedelta(hours=2)) == ["new"]


def test_payment_moves_map_to_documented_types():
    assert payment_event_type(None, "requires_payment_method") == "payment.created"
    assert payment_event_type("processing", "requires_payment_method") == "payment.failed"
    assert payment_event_type("requires_payment_method", "requires_confirmation") is None
    for status in ("requires_action", "processing", "requires_capture", "succeeded", "canceled",
                   "partially_refunded", "refunded", "disputed"):
        assert payment_event_type("requires_confirmation", status) == f"payment.{status}"
    assert {"review.opened", "review.closed", "early_fraud_warning.created", "dispute.created"} <= EVENT_TYPES
