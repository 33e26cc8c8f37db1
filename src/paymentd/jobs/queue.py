"""paymentd's job queue: one procrastinate App per process, its tasks, retries and worker.

Jobs live in PostgreSQL (schema from migration 0003), so they survive crashes and
are shared by every process. Each task retries with exponential backoff and jitter;
a job whose retries run out stays in procrastinate's `failed` status: the
dead-letter list (`paymentd jobs failed`, `failed_jobs()`), never silently dropped.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import procrastinate
import psycopg_pool
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from paymentd.jobs import tasks
from paymentd.jobs.deps import Deps
from paymentd.logs import log
from paymentd.receipts import jobs as receipt_jobs

APPLY_WEBHOOK_EVENT = "paymentd.apply_webhook_event"
RECONCILE = "paymentd.reconcile"
AUDIT_CHECKPOINT = "paymentd.audit_checkpoint"
CLEANUP = "paymentd.cleanup"
SEND_RECEIPTS = "paymentd.send_receipts"
REENCRYPT = "paymentd.reencrypt"
REVIEW_DEADLINES = "paymentd.review_deadlines"
DELIVER_WEBHOOKS = "paymentd.deliver_webhooks"
OUTBOUND_SWEEP = "paymentd.outbound_sweep"
RECEIPTS_QUEUE = "receipts"


def conninfo(database_url: str) -> str:
    """A libpq conninfo for psycopg from any URL paymentd accepts (SQLAlchemy style,
    driver suffixes, or a unix-socket one: `postgresql://u:@/db?host=/tmp/x`)."""
    url = make_url(database_url)
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    for key, value in url.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    return make_conninfo(**{k: v for k, v in params.items() if v not in (None, "")})


def cron_every(seconds: int) -> str:
    """A cron line (procrastinate's 6th column is seconds) firing every `seconds`,
    rounded to what cron can express: divisors of 60 s, or whole minutes."""
    if seconds < 60:
        step = next(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if d >= max(seconds, 1))
        return "* * * * *" if step == 60 else f"* * * * * */{step}"
    minutes = max(1, round(seconds / 60))
    return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"


@dataclass(frozen=True)
class Backoff(BaseRetryStrategy):
    """Exponential backoff with full jitter, capped; `max_attempts` runs in all."""

    max_attempts: int
    base_s: float
    cap_s: float = 300.0

    def get_retry_decision(self, *, exception: BaseException, job: procrastinate.jobs.Job) -> RetryDecision | None:
        # job.attempts counts the runs before this one; this run is number attempts + 1.
        if job.attempts + 1 >= self.max_attempts:
            return None
        ceiling = min(self.cap_s, self.base_s * 2**job.attempts)
        return RetryDecision(retry_in={"seconds": random.uniform(ceiling / 2, ceiling)})


class _LazyPool(psycopg_pool.AsyncConnectionPool):
    """Opens without waiting for a first connection, so paymentd starts (answering 503,
    /readyz not ready) while PostgreSQL is down instead of failing to boot."""

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        await super().open(wait=False, timeout=timeout)


class Jobs:
    """The procrastinate App of one process (one per `create_app`, so test servers in
    one process each have their own pool on their own loop) and its tasks."""

    def __init__(
        self,
        database_url: str,
        *,
        reconcile_interval_s: int = 30,
        audit_checkpoint_interval_s: int = 300,
        receipt_interval_s: int = 10,
        retry_base_s: float = 1.0,
        max_attempts: int = 8,
        pool_size: int = 4,
        webhooks_sweep_interval_s: int = 10,
    ) -> None:
        connector = procrastinate.PsycopgConnector(
            conninfo=conninfo(database_url), min_size=1, max_size=pool_size, name="paymentd-jobs",
            pool_factory=_LazyPool,
        )
        self.app = procrastinate.App(connector=connector)
        retry = Backoff(max_attempts=max_attempts, base_s=retry_base_s)
        self.apply_webhook_event = self.app.task(
            name=APPLY_WEBHOOK_EVENT, pass_context=True, retry=retry
        )(tasks.apply_webhook_event)
        # One sweep at a time (lock) and at most one waiting (queueing_lock), however
        # many workers run the periodic deferrer.
        reconcile = self.app.task(
            name=RECONCILE, pass_context=True, lock="reconciler", queueing_lock="reconciler",
            retry=Backoff(max_attempts=3, base_s=retry_base_s),
        )(tasks.reconcile)
        self.reconcile = self.app.periodic(cron=cron_every(reconcile_interval_s), periodic_id="sweep")(reconcile)
        checkpoint = self.app.task(
            name=AUDIT_CHECKPOINT, pass_context=True, lock="audit-checkpoint", queueing_lock="audit-checkpoint",
            retry=Backoff(max_attempts=3, base_s=retry_base_s),
        )(tasks.audit_checkpoint)
        self.audit_checkpoint = self.app.periodic(cron=cron_every(audit_checkpoint_interval_s),
                                                  periodic_id="audit-checkpoint")(checkpoint)
        cleanup = self.app.task(
            name=CLEANUP, pass_context=True, lock="cleanup", queueing_lock="cleanup",
            retry=Backoff(max_attempts=5, base_s=retry_base_s * 10),
        )(tasks.cleanup)
        self.cleanup = self.app.periodic(cron="17 * * * *", periodic_id="hourly")(cleanup)
        # The receipt-email outbox (receipts/email.py): each row keeps its own backoff,
        # so the job itself retries only what broke outside SMTP (the database). Its own
        # queue, so a worker can be run for it alone (`run_worker(queues=["receipts"])`).
        send_receipts = self.app.task(
            name=SEND_RECEIPTS, queue=RECEIPTS_QUEUE, pass_context=True, lock="receipts", queueing_lock="receipts",
            retry=Backoff(max_attempts=3, base_s=retry_base_s),
        )(receipt_jobs.send_receipts)
        self.send_receipts = self.app.periodic(cron=cron_every(receipt_interval_s), periodic_id="receipts")(
            send_receipts)

        # Reviews past their deadline (fraud/deadlines.py): every five minutes, one run at a time.
        deadlines = self.app.task(
            name=REVIEW_DEADLINES, pass_context=True, lock="review-deadlines", queueing_lock="review-deadlines",
            retry=Backoff(max_attempts=3, base_s=retry_base_s),
        )(tasks.review_deadlines)
        self.review_deadlines = self.app.periodic(cron="*/5 * * * *", periodic_id="review-deadlines")(deadlines)

        # After a key rotation (crypto/reencrypt.py): one at a time, one waiting at most.
        self.reencrypt = self.app.task(
            name=REENCRYPT, pass_context=True, lock="reencrypt", queueing_lock="reencrypt",
            retry=Backoff(max_attempts=max_attempts, base_s=retry_base_s * 5),
        )(tasks.reencrypt)

        # Outbound webhooks (outbound/delivery.py): one job per endpoint at a time (lock),
        # at most one waiting (queueing lock), woken by outbound/listener.py; deliveries keep
        # their own backoff, so the job itself retries only what broke outside HTTP.
        self.deliver_webhooks = self.app.task(
            name=DELIVER_WEBHOOKS, pass_context=True, retry=Backoff(max_attempts=5, base_s=retry_base_s),
        )(tasks.deliver_webhooks)
        sweep = self.app.task(
            name=OUTBOUND_SWEEP, pass_context=True, lock="outbound-sweep", queueing_lock="outbound-sweep",
            retry=Backoff(max_attempts=3, base_s=retry_base_s),
        )(tasks.outbound_sweep)
        self.outbound_sweep = self.app.periodic(cron=cron_every(webhooks_sweep_interval_s),
                                                periodic_id="outbound")(sweep)

    async def defer_deliveries(self, endpoint_id: object) -> int | None:
        """Queue the delivery job of one endpoint; None if one is already waiting."""
        key = f"outbound:{endpoint_id}"
        try:
            return await self.deliver_webhooks.configure(lock=key, queueing_lock=key).defer_async(
                endpoint_id=str(endpoint_id))
        except procrastinate_exceptions.AlreadyEnqueued:
            return None

    async def defer_reencrypt(self) -> int | None:
        """Queue the re-encryption job; None if one is already waiting."""
        try:
            return await self.reencrypt.defer_async()
        except procrastinate_exceptions.AlreadyEnqueued:
            return None

    async def open(self) -> None:
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A psycopg connection from the queue's pool, to defer inside a transaction."""
        async with self.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            yield conn

    async def defer_apply(self, event_id: str, *, connection: Any = None) -> int | None:
        """Queue the job applying one inbox row; None if one is already waiting for it."""
        deferrer = self.apply_webhook_event.configure(connection=connection, queueing_lock=f"webhook:{event_id}")
        try:
            if connection is None:
                return await deferrer.defer_async(event_id=event_id)
            # A savepoint: a refused duplicate must not abort the caller's transaction.
            async with connection.transaction():
                return await deferrer.defer_async(event_id=event_id)
        except procrastinate_exceptions.AlreadyEnqueued:
            return None

    async def run_worker(self, deps: Deps, *, wait: bool = True, concurrency: int = 4, **options: Any) -> None:
        """Run a worker until stopped (or, with wait=False, until the queue is empty),
        and the listener that wakes outbound webhook deliveries."""
        from paymentd.outbound.listener import listen

        listener = asyncio.create_task(listen(deps.database.url, self._wake_deliveries), name="paymentd-outbound")
        try:
            await self.app.run_worker_async(
                wait=wait,
                concurrency=concurrency,
                additional_context={"deps": deps, "jobs": self},
                shutdown_graceful_timeout=options.pop("shutdown_graceful_timeout", 10.0),
                install_signal_handlers=options.pop("install_signal_handlers", False),
                **options,
            )
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _wake_deliveries(self, endpoint_id: object) -> None:
        try:
            await self.defer_deliveries(endpoint_id)
        except Exception as error:  # noqa: BLE001 - only latency: the sweep catches up
            log.warning("outbound.wake_failed", endpoint_id=str(endpoint_id), error_type=type(error).__name__)

    async def failed_jobs(self, limit: int = 100) -> list[FailedJob]:
        """The dead letters: jobs whose retries ran out, newest first."""
        found = await self.app.job_manager.list_jobs_async(status="failed")
        rows = sorted(found, key=lambda job: job.id or 0, reverse=True)[:limit]
        return [
            FailedJob(
                id=job.id or 0,
                task=job.task_name,
                args=dict(job.task_kwargs),
                attempts=job.attempts,
                queue=job.queue,
                scheduled_at=job.scheduled_at,
            )
            for job in rows
        ]

    async def retry_failed(self, job_id: int) -> None:
        """Put a dead letter back in the queue (after the cause was fixed)."""
        await self.app.job_manager.retry_job_by_id_async(job_id=job_id, retry_at=datetime.now().astimezone())


@dataclass(frozen=True)
class FailedJob:
    id: int
    task: str
    args: dict[str, Any]
    attempts: int
    queue: str
    scheduled_at: datetime | None


async def stop_worker(worker: asyncio.Task[Any], *, timeout_s: float = 15.0) -> None:
    """Cancel the worker task and wait for it, cancelling again if a cancellation got
    absorbed (procrastinate shuts down gracefully, and a cancel landing inside a
    job's own handling can be swallowed): shutdown must end, never hang."""
    for _ in range(3):
        worker.cancel()
        done, _ = await asyncio.wait({worker}, timeout=timeout_s)
        if done:
            return
    log.error("jobs.worker_did_not_stop")


async def supervise_worker(jobs: Jobs, deps: Deps, *, concurrency: int = 4, name: str = "paymentd-api-worker",
                           **options: Any) -> None:
    """A worker (beside the API, or `paymentd worker`) restarted with backoff if it ever stops
    on an error (database restart, lost connection), so the process never silently loses it."""
    delay = 1.0
    while True:
        try:
            await jobs.run_worker(deps, concurrency=concurrency, name=name, **dict(options))
            task = asyncio.current_task()
            if task is None or task.cancelling():
                return  # stopped on request
            # procrastinate ends its worker by itself when it loses the database: start it again.
            log.error("jobs.worker_stopped_by_itself", restart_in_s=delay)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - anything: log, wait, restart
            log.error("jobs.worker_crashed", error_type=type(error).__name__, error=str(error), restart_in_s=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 60.0)
