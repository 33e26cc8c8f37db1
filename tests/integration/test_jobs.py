"""The job queue itself: connection strings, schedules, retries ending in the visible
dead-letter state, housekeeping, and the `paymentd worker/reconcile/jobs` commands."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from paymentd import cli
from paymentd.app import build_provider
from paymentd.config import Settings, get_settings
from paymentd.db import Database
from paymentd.jobs.cleanup import delete_expired_idempotency_keys
from paymentd.jobs.deps import Deps
from paymentd.jobs.queue import RECONCILE, Jobs, conninfo, cron_every, stop_worker
from paymentd.providers.base import ProviderEvent, ProviderPayment, ProviderStatus
from paymentd.webhooks import inbox
from tests.conftest import make_key


def test_conninfo_accepts_every_url_paymentd_does() -> None:
    socket = conninfo("postgresql://postgres:@/paymentd?host=/tmp/pg-xyz")
    assert "host=/tmp/pg-xyz" in socket and "dbname=paymentd" in socket and "user=postgres" in socket
    assert "password" not in socket
    tcp = conninfo("postgresql+asyncpg://ann:s3cret@db.example:5433/pay?sslmode=require")
    for part in ("host=db.example", "port=5433", "user=ann", "password=s3cret", "dbname=pay", "sslmode=require"):
        assert part in tcp


def test_cron_every() -> None:
    assert cron_every(30) == "* * * * * */30"
    assert cron_every(7) == "* * * * * */10"
    assert cron_every(60) == "* * * * *"
    assert cron_every(300) == "*/5 * * * *"


@pytest.fixture
async def deps(settings: Settings, database: Database) -> AsyncIterator[Deps]:
    provider = build_provider(settings)
    yield Deps(database, provider, settings)
    await provider.aclose()


def _event_for_nobody() -> ProviderEvent:
    intent_id = f"pi_nobody_{uuid.uuid4().hex[:10]}"
    intent = ProviderPayment(
        id=intent_id, status=ProviderStatus.succeeded, amount=100, currency="usd", amount_received=100,
        amount_capturable=0, client_secret=None, payment_method=None, payment_method_types=("card",),
        capture_method="automatic", next_action=None, last_error=None, latest_charge=None,
        payment_method_details=None, customer=None, metadata={},
    )
    return ProviderEvent(id=f"evt_test_{uuid.uuid4().hex}", type="payment_intent.succeeded",
                         created=datetime.now(UTC), object_type="payment_intent", object=intent, livemode=False,
                         payment_intent_id=intent_id)


async def _job_status(database_url: str, job_id: int) -> str:
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as conn:
        row = await (await conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,))).fetchone()
        return row[0]


async def test_a_job_that_keeps_failing_lands_in_the_failed_state_and_is_listed(
    database_url: str, deps: Deps
) -> None:
    jobs = Jobs(database_url, retry_base_s=0.02, max_attempts=3)
    await jobs.open()
    try:
        event = _event_for_nobody()
        job_id = await _record(jobs, event, database_url)
        deadline = time.monotonic() + 20
        # Run the worker until the queue is empty, again and again: retries are scheduled a little later.
        while await _job_status(database_url, job_id) != "failed":
            assert time.monotonic() < deadline, "the job never reached the failed state"
            await jobs.run_worker(deps, wait=False, concurrency=1, listen_notify=False)
            await asyncio.sleep(0.05)
        failed = await jobs.failed_jobs()
        mine = next(job for job in failed if job.id == job_id)
        assert mine.task == "paymentd.apply_webhook_event" and mine.args == {"event_id": event.id}
        assert mine.attempts == 3
        async with deps.database.transaction() as session:
            row = (await session.execute(text("SELECT attempts, last_error, processed_at FROM webhook_events "
                                              "WHERE id = :id"), {"id": event.id})).one()
        assert row.attempts == 3 and "PaymentNotYetKnown" in row.last_error and row.processed_at is None
    finally:
        await jobs.close()

    # The CLI runs its own event loop: in a thread, beside this test's.
    listed = await asyncio.to_thread(_cli, database_url, "jobs", "failed")
    assert listed.exit_code == 0, listed.output
    assert job_id in [json.loads(line)["id"] for line in listed.stdout.splitlines() if line.startswith("{")]


async def _record(jobs: Jobs, event: ProviderEvent, database_url: str) -> int:
    assert await inbox.record(jobs, event, source="webhook")  # the row and its job, in one transaction
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as conn:
        row = await (await conn.execute("SELECT id FROM procrastinate_jobs WHERE args->>'event_id' = %s",
                                        (event.id,))).fetchone()
        return row[0]


async def test_the_worker_defers_the_periodic_sweep(database_url: str, deps: Deps) -> None:
    jobs = Jobs(database_url, reconcile_interval_s=1)
    await jobs.open()
    try:
        worker = asyncio.create_task(jobs.run_worker(deps, concurrency=2))
        try:
            async def swept() -> bool:
                async with deps.database.transaction() as session:
                    return bool(await session.scalar(text(
                        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t AND status = 'succeeded'"),
                        {"t": RECONCILE}))
            deadline = time.monotonic() + 10
            while not await swept():
                assert time.monotonic() < deadline, "no reconcile job ran"
                await asyncio.sleep(0.1)
        finally:
            await stop_worker(worker)
            assert worker.done()
            # A sweep deferred for the next second must not wait in the shared queue for
            # another module's worker, which would run it in the middle of that module's tests.
            async with deps.database.transaction() as session:
                await session.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = :t AND status = 'todo'"),
                                      {"t": RECONCILE})
    finally:
        await jobs.close()


async def test_expired_idempotency_keys_are_deleted(database: Database) -> None:
    account_id, _ = await make_key(database, f"cleanup-{uuid.uuid4().hex[:8]}", [])
    now = datetime.now(UTC)
    async with database.transaction() as session:
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=23))):
            await session.execute(text(
                "INSERT INTO idempotency_keys (account_id, key, request_hash, created_at) VALUES (:a, :k, 'h', :at)"),
                {"a": account_id, "k": key, "at": now - age})
    await delete_expired_idempotency_keys(database, 24, now=now)
    async with database.transaction() as session:
        left = (await session.scalars(text("SELECT key FROM idempotency_keys WHERE account_id = :a"),
                                      {"a": account_id})).all()
    assert left == ["fresh"]


def _cli(database_url: str, *args: str):  # type: ignore[no-untyped-def]
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli.app, list(args), env={"DATABASE_URL": database_url})
    finally:
        get_settings.cache_clear()


def test_paymentd_reconcile_runs_one_sweep(database_url: str, sim) -> None:  # type: ignore[no-untyped-def]
    get_settings.cache_clear()
    result = CliRunner().invoke(cli.app, ["reconcile"], env={"DATABASE_URL": database_url,
                                                              "STRIPE_API_BASE": sim.url})
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"payments_refreshed", "events_missed", "inbox_applied"} <= set(report)
