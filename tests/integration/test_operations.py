"""The operator's side of the HTTP edge: /metrics (restricted by configuration, labels
bounded, counts only what committed), 405 for every fixed path asked with another
method, and validation messages a person can read."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from prometheus_client.parser import text_string_to_metric_families

from paymentd.app import create_app
from paymentd.config import Settings
from tests.support.servers import ThreadedServer


def value(text: str, name: str, **labels: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


@pytest.fixture(scope="module")
def restricted(settings: Settings) -> Iterator[ThreadedServer]:
    """A paymentd whose /metrics needs a token and an allowed address (loopback is)."""
    server = ThreadedServer(create_app(settings.model_copy(update={
        "metrics_token": SecretStr("scrape-secret"), "metrics_allow": ["10.0.0.0/8", "127.0.0.1/32"]}))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def elsewhere(settings: Settings) -> Iterator[ThreadedServer]:
    """/metrics open only to a network the tests are not in."""
    server = ThreadedServer(create_app(settings.model_copy(update={"metrics_allow": ["192.0.2.0/24"]}))).start()
    yield server
    server.stop()


def test_metrics_token_is_required_when_configured(restricted: ThreadedServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-secret"}):
        response = httpx.get(f"{restricted.url}/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert "scrape-secret" not in response.text
    ok = httpx.get(f"{restricted.url}/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert ok.status_code == 200 and "paymentd_http_requests_total" in ok.text


def test_metrics_refuse_addresses_outside_the_allowed_networks(elsewhere: ThreadedServer) -> None:
    response = httpx.get(f"{elsewhere.url}/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "metrics_address_not_allowed"
    assert httpx.get(f"{elsewhere.url}/healthz").status_code == 200  # only /metrics is restricted


def test_a_bad_network_in_configuration_stops_the_start() -> None:
    with pytest.raises(ValueError):
        Settings(metrics_allow="10.0.0.0/33")


async def test_metrics_label_templates_and_count_only_what_committed(merchant, anonymous) -> None:  # type: ignore[no-untyped-def]
    before = (await anonymous.get("/metrics")).text
    user = await merchant.user()
    created = await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "3.00"})
    payment_id = created.json()["id"]
    assert (await merchant.client.get(f"/api/payments/{payment_id}")).status_code == 200
    # Refused before anything is written: no move counted.
    assert (await merchant.client.post("/api/payments/capture", json={"payment_id": payment_id})).status_code == 409
    after = (await anonymous.get("/metrics")).text

    assert payment_id not in after and user["id"] not in after
    routes = set(re.findall(r'route="([^"]*)"', after))
    assert "/api/payments/{payment_id}" in routes
    assert not [r for r in routes if re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", r)]
    name = "paymentd_payment_status_moves_total"
    moved = value(after, name, from_status="none") - value(before, name, from_status="none")
    assert moved >= 1  # other tests may create payments at the same time, never fewer
    assert value(after, "paymentd_http_requests_total", route="/api/payments/capture", status="409") >= 1


@pytest.mark.parametrize("path", ["/api/payments/create", "/api/payments/confirm", "/api/payments/capture",
                                  "/api/payments/cancel", "/api/payments/refund"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_post_only_paths_answer_405_with_allow(merchant, path: str, method: str) -> None:  # type: ignore[no-untyped-def]
    response = await merchant.client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "method_not_allowed"
    assert error["request_id"].startswith("req_") and "UUID" not in error["message"]


async def test_every_fixed_path_keeps_its_methods(merchant, anonymous) -> None:  # type: ignore[no-untyped-def]
    paths = (await anonymous.get("/openapi.json")).json()["paths"]
    fixed = {p: {m.upper() for m in ops} for p, ops in paths.items() if "{" not in p}
    for path, methods in fixed.items():
        for method in {"GET", "POST", "DELETE"} - methods - ({"HEAD"} if "GET" in methods else set()):
            response = await merchant.client.request(method, path)
            assert response.status_code == 405, (method, path, response.text)
            assert set(response.headers["allow"].split(", ")) >= methods


@pytest.mark.parametrize("body,param", [
    ({"email": "not-an-email", "name": "Ann"}, "email"),
    ({"email": "ann@@example.com", "name": "Ann"}, "email"),
])
async def test_a_bad_email_is_told_in_words(merchant, body: dict, param: str) -> None:  # type: ignore[no-untyped-def]
    response = await merchant.client.post("/api/users", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["code"] == "parameter_invalid"
    assert "email address" in error["message"]
    assert "^" not in error["message"] and "pattern" not in error["message"]


async def test_a_bad_payment_method_id_is_told_in_words(merchant) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    response = await merchant.client.post(f"/api/users/{user['id']}/payment-methods",
                                          json={"payment_method": "card-4242"})
    assert response.status_code == 400
    assert "pm_card_visa" in response.json()["error"]["message"]
    assert "^" not in response.json()["error"]["message"]
