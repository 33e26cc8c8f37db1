"""Fixtures for the dashboard: a signed-in HTTP client, and headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright; no browser is ever downloaded) whose every
request and console message is recorded, so a test fails on a request to another host
or a console error (a CSP violation is one)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from paymentd.auth.keys import Scope
from paymentd.db import Database
from tests.conftest import make_key

CHROMIUM = os.environ.get("PAYMENTD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).parent / "screenshots"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


@dataclass
class Shopper:
    """An account, its key, an API client with it, and its database id."""

    account: str
    account_id: uuid.UUID
    key: str
    api: httpx.AsyncClient

    async def user(self, email: str = "ann@example.com") -> str:
        response = await self.api.post("/api/users", json={"email": email, "name": "Ann"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    async def payment(self, user_id: str, amount: str, method: str | None = "pm_card_visa", *,
                      expect: int = 200, **fields: object) -> dict:
        created = await self.api.post("/api/payments/create", json={"user_id": user_id, "amount": amount, **fields})
        assert created.status_code == 201, created.text
        payment = created.json()
        if method is None:
            return payment
        confirmed = await self.api.post("/api/payments/confirm", headers={"Prefer": "wait=10"},
                                        json={"payment_id": payment["id"], "payment_method": method})
        assert confirmed.status_code == expect, confirmed.text
        return confirmed.json() if expect == 200 else {**payment, "declined": confirmed.json()}


@pytest.fixture
async def shopper(paymentd, database: Database) -> AsyncIterator[Shopper]:  # type: ignore[no-untyped-def]
    account = f"dash-{uuid.uuid4().hex[:8]}"
    account_id, key = await make_key(database, account, list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as api:
        yield Shopper(account, account_id, key, api)


@asynccontextmanager
async def signed_in(base_url: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client holding a dashboard session opened with `key`."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        page = await client.get("/dashboard/login")
        response = await client.post("/dashboard/login", data={"csrf": csrf_of(page.text), "key": key})
        assert response.status_code == 303 and response.headers["location"] == "/dashboard", response.text
        yield client


@dataclass
class Watched:
    """A browser page whose requests and console errors are recorded."""

    page: object
    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Console messages a test expects (Chromium logs every 4xx document as an error).
    allowed: list[str] = field(default_factory=list)

    async def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]

    async def sign_in(self, key: str) -> None:
        page = self.page
        await page.goto(f"{self.origin}/dashboard")  # type: ignore[attr-defined]
        assert "/dashboard/login" in page.url  # type: ignore[attr-defined]
        await page.fill("#key", key)  # type: ignore[attr-defined]
        await page.click("button[type=submit]")  # type: ignore[attr-defined]
        await page.wait_for_url(f"{self.origin}/dashboard")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package `chromium`; .ci/run installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@asynccontextmanager
async def watching(browser, origin: str) -> AsyncIterator[Watched]:  # type: ignore[no-untyped-def]
    """A fresh browser context on `origin`; on leaving, no request went to another host
    and no console error was logged (except those the test allowed)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    seen = Watched(page, origin)
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("console", lambda message: seen.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.errors.append(f"page error: {error}"))
    try:
        yield seen
    finally:
        await context.close()
    foreign = [url for url in seen.requests if not url.startswith(f"{seen.origin}/")]
    assert not foreign, f"requests to another host: {foreign}"
    unexpected = [e for e in seen.errors if not any(a in e for a in seen.allowed)]
    assert not unexpected, f"console errors: {unexpected}"


@pytest.fixture
async def watched(browser, paymentd) -> AsyncIterator[Watched]:  # type: ignore[no-untyped-def]
    async with watching(browser, paymentd.url) as seen:
        yield seen
