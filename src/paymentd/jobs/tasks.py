"""The work the queue runs. Each task takes its dependencies from the worker's
context (`Deps`), so the same functions run under `paymentd worker`, beside the API,
and in tests; registration, retries and schedules are in `queue.py`."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from procrastinate import JobContext

from paymentd.auth import service as auth_service
from paymentd.crypto import reencrypt as reencrypt_module
from paymentd.fraud import velocity
from paymentd.jobs import cleanup as cleanup_module
from paymentd.jobs import reconciler
from paymentd.jobs.deps import Deps
from paymentd.providers.limiter import outbound_deadline
from paymentd.webhooks import inbox

# No caller waits on a job: it may queue for the shared Stripe rate limit far longer
# than a request's budget.
JOB_STRIPE_WAIT_S = 30.0
# Succeeded jobs are history, not state: kept a week for inspection. Failed ones
# (the dead letters) are kept until someone looks at them.
KEEP_SUCCEEDED_JOBS_HOURS = 24 * 7


def _deps(context: JobContext) -> Deps:
    return context.additional_context["deps"]


async def apply_webhook_event(context: JobContext, event_id: str) -> str:
    """Apply one inbox row. An event for a payment not committed yet raises
    PaymentNotYetKnown: retried with backoff, then left to the reconciler's sweep."""
    with outbound_deadline(time.monotonic() + JOB_STRIPE_WAIT_S):
        return await inbox.apply(_deps(context), event_id)


async def deliver_webhooks(context: JobContext, endpoint_id: str) -> dict:
    """Send one endpoint's due webhooks, in order per object (outbound/delivery.py)."""
    import uuid

    from paymentd.outbound.delivery import Sender

    deps = _deps(context)
    return await Sender(deps.database, deps.settings, deps.outbound_runtime()).run(uuid.UUID(endpoint_id))


async def outbound_sweep(context: JobContext, timestamp: int) -> dict:
    """Periodic: a delivery job for every enabled endpoint with a delivery due (retries
    past a job's linger time, and anything a lost notification left)."""
    from paymentd.outbound.delivery import due_endpoints

    deps = _deps(context)
    endpoints = await due_endpoints(deps.database, deps.outbound_runtime().clock())
    for endpoint_id in endpoints:
        await context.additional_context["jobs"].defer_deliveries(endpoint_id)
    return {"endpoints": len(endpoints)}


async def reconcile(context: JobContext, timestamp: int) -> dict:
    """The periodic sweep (see reconciler.py)."""
    report = await reconciler.sweep(_deps(context))
    return report.as_dict()


async def audit_checkpoint(context: JobContext, timestamp: int) -> dict:
    """Periodic: sign every audit chain's head that moved since its last checkpoint."""
    from paymentd.audit import checkpoints, signing

    deps = _deps(context)
    return {"checkpoints": await checkpoints.write(deps.database, signing.load(deps.settings))}


async def cleanup(context: JobContext, timestamp: int) -> dict:
    """Hourly: forget expired Idempotency-Keys, webhook payloads and outbound webhooks past
    their retention, old succeeded jobs and fraud counter buckets no window reaches; record
    the API keys that expired since."""
    deps = _deps(context)
    async with deps.database.transaction() as session:
        expired = await auth_service.audit_expired_keys(session)
    deleted = await cleanup_module.delete_expired_idempotency_keys(deps.database, deps.settings.idempotency_ttl_hours)
    inbox = await cleanup_module.purge_webhook_inbox(deps.database, deps.settings.webhook_retention_days)
    outbound = await cleanup_module.purge_outbound(deps.database, deps.settings.webhook_retention_days)
    await context.app.job_manager.delete_old_jobs(nb_hours=KEEP_SUCCEEDED_JOBS_HOURS)
    async with deps.database.sql_connection() as conn:
        buckets = await velocity.forget_old(conn, datetime.now(UTC))
    return {"api_keys_expired": expired, "idempotency_keys_deleted": deleted, "webhook_payloads_purged": inbox.payloads_purged,
            "webhook_events_forgotten": inbox.events_forgotten, "fraud_counter_buckets_deleted": buckets,
            "outbound_deliveries_deleted": outbound.deliveries_deleted,
            "outbound_events_deleted": outbound.events_deleted}


async def review_deadlines(context: JobContext, timestamp: int) -> dict:
    """Periodic: decide the reviews nobody decided by their deadline (fraud/deadlines.py)."""
    from paymentd.fraud import deadlines

    with outbound_deadline(time.monotonic() + JOB_STRIPE_WAIT_S):
        return (await deadlines.decide_due(_deps(context))).as_dict()


async def reencrypt(context: JobContext) -> dict:
    """After `paymentd keys rotate`: seal every field under the new primary (crypto/reencrypt.py)."""
    deps = _deps(context)
    return await reencrypt_module.reencrypt(deps.database, refresh_s=deps.settings.encryption_refresh_s)
