"""The HTTP edge as a client meets it: security headers on every kind of response
(JSON, HTML and PDF receipts, errors the edge answers itself, /metrics, /healthz),
a server request id per request beside the caller's, and hostile JSON nesting."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from sqlalchemy import select

from paymentd.db import Database
from paymentd.http import MAX_JSON_DEPTH
from paymentd.payments.models import PaymentEvent
from paymentd.receipts import render
from tests.conftest import Merchant
from tests.integration.test_receipts import paid, receipt

SERVER_ID = re.compile(r"^req_[0-9a-f]{32}$")


def assert_secure(response: httpx.Response, *, html: bool = False) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    if headers["content-type"] != "application/pdf":  # see security_headers.py
        csp = headers["content-security-policy"]
        assert csp.startswith("default-src 'none'") and "frame-ancestors 'none'" in csp
        # Nothing from another host, ever: no source list names a scheme or a host.
        assert not re.search(r"https?:|\*|'unsafe-", csp), csp
    if html:
        assert headers["content-type"].startswith("text/html")
    # Plain HTTP here (the TLS test in e2e/test_tls.py checks HSTS): never over HTTP.
    assert "strict-transport-security" not in headers
    assert len(response.headers.get_list("cache-control")) == 1


async def test_json_html_and_pdf_receipts_carry_the_headers(merchant: Merchant) -> None:
    payment = await paid(merchant)
    as_json = await receipt(merchant, payment["id"])
    assert as_json.status_code == 200
    assert_secure(as_json)
    as_html = await receipt(merchant, payment["id"], "text/html")
    assert as_html.status_code == 200
    assert_secure(as_html, html=True)
    # The receipt's own inline style is allowed by its hash, and nothing else is.
    assert as_html.headers["content-security-policy"] == render.HTML_CSP
    styles = re.findall(r"<style>(.*?)</style>", as_html.text, re.S)
    assert styles and all(f"'{render.csp_hash(s)}'" in render.HTML_CSP for s in styles)
    as_pdf = await receipt(merchant, payment["id"], "application/pdf")
    assert as_pdf.status_code == 200 and as_pdf.content.startswith(b"%PDF")
    assert_secure(as_pdf)
    created = await merchant.client.get(f"/api/payments/{payment['id']}")
    assert_secure(created)


async def test_operations_endpoints_carry_the_headers(anonymous: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json"):
        response = await anonymous.get(path)
        assert response.status_code == 200, path
        assert_secure(response)


async def test_errors_answered_by_the_edge_and_middleware_carry_the_headers(
    merchant: Merchant, anonymous: httpx.AsyncClient, settings
) -> None:  # type: ignore[no-untyped-def]
    cases = [
        # The edge itself: card data and an oversized body never reach the app.
        (await merchant.client.post("/api/users", json={"email": "a@b.co", "name": "4242 4242 4242 4242"}), 400),
        (await merchant.client.post("/api/users", content=b"x" * (settings.max_body_bytes + 1),
                                    headers={"Content-Type": "application/json"}), 413),
        (await merchant.client.post("/api/users", content=b"[" * 400_000,
                                    headers={"Content-Type": "application/json"}), 400),
        # Authentication (a dependency), an unknown route, a wrong method, a bad body.
        (await anonymous.get("/api/payments/history"), 401),
        (await anonymous.get("/no/such/route"), 404),
        (await anonymous.delete("/healthz"), 405),
        (await merchant.client.post("/api/users", json={"name": "no email"}), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert_secure(response)
        assert response.json()["error"]["request_id"] == response.headers["paymentd-request-id"]


@pytest.mark.parametrize("body", [
    b"[" * 400_000,
    b"[" * 400_000 + b"]" * 400_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    # Just over the limit, well under the interpreter's recursion limit.
    b'{"metadata": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
])
async def test_deep_nesting_is_a_400_in_the_envelope(merchant: Merchant, body: bytes) -> None:
    for path in ("/api/payments/create", "/api/webhooks/stripe"):
        response = await merchant.client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.text[:300])
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "json_too_deep")
        assert "Traceback" not in response.text


async def test_nesting_within_the_limit_is_served(merchant: Merchant) -> None:
    user = await merchant.user()
    # Strings full of brackets are not nesting; metadata at its usual depth is fine.
    response = await merchant.client.post("/api/payments/create", json={
        "user_id": user["id"], "amount": "3.00", "description": "[" * 200, "metadata": {"note": "{" * 100}})
    assert response.status_code == 201, response.text
    # Depth at the limit passes the edge (the route's own validation then refuses the shape).
    nested = b'{"user_id": "x", "amount": "1", "metadata": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (
        MAX_JSON_DEPTH - 1) + b"}"
    shaped = await merchant.client.post("/api/payments/create", content=nested,
                                        headers={"Content-Type": "application/json"})
    assert shaped.status_code == 400 and shaped.json()["error"]["code"] != "json_too_deep", shaped.text


async def test_every_request_gets_its_own_server_id(merchant: Merchant, database: Database) -> None:
    user = await merchant.user()
    shared = {"X-Request-Id": "trace-shared-by-two"}
    first, second = await asyncio.gather(*[
        merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "4.00"}, headers=shared)
        for _ in range(2)])
    for response in (first, second):
        assert response.status_code == 201
        assert response.headers["x-request-id"] == "trace-shared-by-two"  # echoed for the caller
        assert SERVER_ID.match(response.headers["paymentd-request-id"])
    ours = {first.headers["paymentd-request-id"], second.headers["paymentd-request-id"]}
    assert len(ours) == 2

    # The payments' history records the server's id, never the caller's.
    async with database.transaction() as session:
        recorded = set((await session.scalars(select(PaymentEvent.request_id).where(
            PaymentEvent.payment_id.in_([first.json()["id"], second.json()["id"]])))).all())
    assert recorded == ours

    # Without a caller id (or with one that is not a sane token) X-Request-Id is ours.
    for headers in ({}, {"X-Request-Id": "has spaces <and tags>"}, {"X-Request-Id": "x" * 201}):
        response = await merchant.client.get(f"/api/payments/{first.json()['id']}", headers=headers)
        assert SERVER_ID.match(response.headers["x-request-id"])
        assert response.headers["x-request-id"] == response.headers["paymentd-request-id"]


async def test_an_error_envelope_names_the_server_id_not_the_callers(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/payments/history", headers={"X-Request-Id": "my-trace"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "my-trace"
    assert response.json()["error"]["request_id"] == response.headers["paymentd-request-id"]
    assert SERVER_ID.match(response.json()["error"]["request_id"])


async def test_docs_load_nothing_from_other_hosts(anonymous: httpx.AsyncClient) -> None:
    page = await anonymous.get("/docs")
    assert page.status_code == 200
    assert_secure(page, html=True)
    csp = page.headers["content-security-policy"]
    # Every file the page names is ours, and is served; its inline script is allowed by hash.
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert linked and all(url.startswith("/docs/assets/") for url in linked), linked
    for url in linked:
        asset = await anonymous.get(url)
        assert asset.status_code == 200 and asset.content, url
        assert_secure(asset)
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert inline and all(f"'{render.csp_hash(s)}'" in csp for s in inline)
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    # ReDoc would need a CDN: not served.
    assert (await anonymous.get("/redoc")).status_code == 404
