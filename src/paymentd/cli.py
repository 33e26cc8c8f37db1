"""The `paymentd` command: serve, migrate, account and API-key administration.

Commands that need a database use DATABASE_URL, or the embedded PostgreSQL in
the data folder when it is unset (the same one `paymentd serve` uses).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import secrets
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import exc as sa_exc

from paymentd.audit import context as audit_context
from paymentd.audit import signing as audit_signing
from paymentd import crypto, drain, logs, multiproc
from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.config import Settings, get_settings
from paymentd.db import Database
from paymentd.embedded import EmbeddedPostgres
from paymentd.migrate import upgrade

app = typer.Typer(help="paymentd: payments between your applications and Stripe.", no_args_is_help=True)
apikey_app = typer.Typer(help="Create, list and revoke API keys. Rotate: create a new key, move the "
                         "applications to it, revoke the old one.", no_args_is_help=True)
account_app = typer.Typer(help="Manage accounts (merchants).", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
app.add_typer(account_app, name="account")
keys_app = typer.Typer(help="Encryption keys: rotate, status, retire.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(help="Inspect the background job queue.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
audit_app = typer.Typer(help="Check, sign and export the audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


# The long-running processes: their background work is the system's, not whoever started them.
SERVICES = frozenset({"serve", "worker"})


@app.callback()
def _operator(ctx: typer.Context) -> None:
    """Whatever a one-off command changes is audited as `operator:<OS user>`."""
    if ctx.invoked_subcommand not in SERVICES:
        audit_context.act_as(audit_context.Actor("operator", getpass.getuser()))

DEMO_ACCOUNT = "demo"


def _say(message: str) -> None:
    """Human-facing output goes to stderr so stdout carries only what scripts capture."""
    typer.echo(message, err=True)


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one for as long as the command runs."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    # SIGTERM must unwind through `finally` so the embedded server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield embedded.start()
    finally:
        embedded.stop()


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _with_session(url: str, work):  # type: ignore[no-untyped-def]
    crypto.install(get_settings(), url)  # audit entries written here seal their personal data
    database = Database(url, pool_size=2)
    try:
        async with database.transaction() as session:
            return await work(session)
    finally:
        await database.dispose()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = get_settings()
    with database_url(settings) as url:
        upgrade(url)
    _say("database schema is up to date")


@account_app.command("create")
def account_create(name: Annotated[str, typer.Argument(help="Unique account name")]) -> None:
    """Create an account; prints its id."""
    settings = get_settings()
    from sqlalchemy.exc import IntegrityError

    with database_url(settings) as url:
        upgrade(url)
        try:
            account = _run(_with_session(url, lambda s: auth_service.create_account(s, name)))
        except (auth_service.AccountExists, IntegrityError):  # the latter: created by another at the same moment
            _say(f"an account named {name!r} already exists (account names are unique); "
                 f"give its keys with `paymentd apikey create --account {name} ...`")
            raise typer.Exit(1) from None
    typer.echo(str(account.id))


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    """`--expires-in 90d` (s, m, h, d, w) or `--expires-at` an ISO 8601 time (UTC unless
    it names its zone); refuses both at once, nonsense, and the past."""
    if expires_in is not None and expires_at is not None:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        match = _DURATION.match(expires_in.strip())
        if match is None or int(match.group(1)) == 0:
            raise typer.BadParameter("--expires-in takes a positive number and a unit: 90d, 12h, 2w, 30m, 45s")
        return datetime.now(UTC) + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if expires_at is not None:
        try:
            when = datetime.fromisoformat(expires_at.strip())
        except ValueError:
            raise typer.BadParameter("--expires-at takes an ISO 8601 time, e.g. 2027-03-01T00:00:00Z") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if when <= datetime.now(UTC):
            raise typer.BadParameter("--expires-at is in the past")
        return when
    return None


@apikey_app.command("create")
def apikey_create(
    account: Annotated[str, typer.Option(help="Account name")],
    scope: Annotated[list[Scope], typer.Option(help="Repeat for several scopes")],
    name: Annotated[str | None, typer.Option(help="A label for the key")] = None,
    expires_in: Annotated[str | None, typer.Option(help="Stops working after this long: 90d, 12h, 2w...")] = None,
    expires_at: Annotated[str | None, typer.Option(help="Stops working at this ISO 8601 time (UTC if no zone)")] = None,
) -> None:
    """Create a key; prints the secret once, alone on stdout (its id and prefix on stderr)."""
    expiry = _expiry(expires_in, expires_at)
    settings = get_settings()
    with database_url(settings) as url:
        try:
            row, secret = _run(_with_session(
                url, lambda s: auth_service.create_key(s, account, scope, name=name, expires_at=expiry)))
        except auth_service.UnknownAccount:
            _say(f"no account named {account!r}; create it with `paymentd account create {account}`")
            raise typer.Exit(1) from None
    _say(f"created key {row.id} (prefix pd_{row.prefix}) for account {account!r}, scopes {', '.join(row.scopes)}, "
         + (f"expires {row.expires_at.isoformat()}" if row.expires_at else "never expires")
         + f"; revoke with `paymentd apikey revoke {row.id}`")
    typer.echo(secret)


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


@apikey_app.command("list")
def apikey_list(
    account: Annotated[str | None, typer.Option(help="Only this account's keys")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Every key (never its secret): id, prefix, account, scopes, created, expires, last used, revoked.
    Last use is written at most once a minute per process, so it may be that much behind."""
    settings = get_settings()
    with database_url(settings) as url:
        try:
            rows = _run(_with_session(url, lambda s: auth_service.list_keys(s, account)))
        except auth_service.UnknownAccount:
            _say(f"no account named {account!r}")
            raise typer.Exit(1) from None
    now = datetime.now(UTC)
    listed = [
        {"id": str(key.id), "prefix": f"pd_{key.prefix}", "account": name, "name": key.name, "scopes": key.scopes,
         "created_at": _when(key.created_at), "expires_at": _when(key.expires_at),
         "last_used_at": _when(key.last_used_at), "revoked_at": _when(key.revoked_at),
         "status": "revoked" if key.revoked_at else "expired" if key.expires_at and key.expires_at <= now
         else "active"}
        for key, name in rows
    ]
    if as_json:
        for entry in listed:
            typer.echo(json.dumps(entry))
        return
    if not listed:
        _say("no keys")
        return
    columns = ["id", "prefix", "account", "scopes", "status", "created_at", "expires_at", "last_used_at",
               "revoked_at"]
    table = [[", ".join(e[c]) if c == "scopes" else (e[c] or "-") for c in columns] for e in listed]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    for line in [columns, *table]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@apikey_app.command("revoke")
def apikey_revoke(
    key: Annotated[str, typer.Argument(help="The whole key, its id, or its prefix (pd_xxxxxxxxxxxx)")],
) -> None:
    """Revoke a key; every process refuses it (401) within PAYMENTD_AUTH_CACHE_S (1 s)."""
    settings = get_settings()
    with database_url(settings) as url:
        revoked = _run(_with_session(url, lambda s: auth_service.revoke_key(s, key)))
    if not revoked:
        _say("no live key matches (unknown, already revoked, or a whole key whose secret is wrong)")
        raise typer.Exit(1)
    _say(f"revoked key {revoked.id} (prefix pd_{revoked.prefix})")


@account_app.command("set-limit")
def account_set_limit(
    name: Annotated[str, typer.Argument(help="Account name")],
    rps: Annotated[int | None, typer.Option(min=0, help="Requests per second (0: no limit)")] = None,
    default: Annotated[bool, typer.Option("--default", help="Back to PAYMENTD_ACCOUNT_RPS")] = False,
) -> None:
    """Set an account's inbound request limit; over it, requests get 429 with Retry-After.
    Takes effect within PAYMENTD_AUTH_CACHE_S in every process."""
    if (rps is not None) == default:  # exactly one of the two
        raise typer.BadParameter("give --rps N or --default")
    settings = get_settings()
    with database_url(settings) as url:
        try:
            _run(_with_session(url, lambda s: auth_service.set_rate_limit(s, name, None if default else rps)))
        except auth_service.UnknownAccount:
            _say(f"no account named {name!r}")
            raise typer.Exit(1) from None
    _say(f"account {name!r}: " + (f"default limit ({settings.account_rps}/s)" if default
                                  else "no limit" if rps == 0 else f"{rps} requests/s"))


@account_app.command("set-fraud")
def account_set_fraud(
    name: Annotated[str, typer.Argument(help="Account name")],
    review_deadline_hours: Annotated[int | None, typer.Option(
        min=1, max=720, help="Hours a review of an uncaptured payment waits for a person (default 144)")] = None,
    review_deadline_action: Annotated[str | None, typer.Option(
        help="What the deadline does: approve or deny (default deny)")] = None,
    auto_refund_warnings: Annotated[bool | None, typer.Option(
        "--auto-refund-warnings/--no-auto-refund-warnings",
        help="Refund a payment in full when an actionable early fraud warning arrives (default on)")] = None,
    default: Annotated[bool, typer.Option("--default", help="Back to paymentd's defaults")] = False,
) -> None:
    """Set an account's fraud settings (reviews' deadline, early fraud warning refunds)."""
    from paymentd.fraud import settings as fraud_settings

    keep = fraud_settings.KEEP
    if review_deadline_action not in (None, "approve", "deny"):
        raise typer.BadParameter("--review-deadline-action is approve or deny")
    values = {"review_deadline_hours": None, "review_deadline_action": None,
              "auto_refund_early_fraud_warnings": True} if default else {
        "review_deadline_hours": keep if review_deadline_hours is None else review_deadline_hours,
        "review_deadline_action": keep if review_deadline_action is None else review_deadline_action,
        "auto_refund_early_fraud_warnings": keep if auto_refund_warnings is None else auto_refund_warnings}
    settings = get_settings()
    with database_url(settings) as url:
        try:
            changed = _run(_with_session(url, lambda s: fraud_settings.update(s, name, **values)))
        except LookupError:
            _say(f"no account named {name!r}")
            raise typer.Exit(1) from None
    _say(f"account {name!r}: " + (", ".join(f"{k} {b} -> {a}" for k, (b, a) in changed.items()) or "unchanged"))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
    ssl_certfile: Annotated[Path | None, typer.Option(help="Serve TLS (1.2+) with this certificate chain (PEM)")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="The certificate's private key (PEM)")] = None,
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        help="Proxies trusted for X-Forwarded-For/-Proto (comma-separated, '*' for any)")] = None,
) -> None:
    """Run the API. With nothing configured: embedded PostgreSQL and the Stripe simulator."""
    import uvicorn

    from paymentd.tls import server_context

    settings = get_settings()
    try:
        crypto.key_source(settings)  # production without an encryption key stops here
    except crypto.KeyConfigError as error:
        _say(f"refusing to start: {error}")
        raise typer.Exit(2) from None
    host = host or settings.host
    port = port or settings.port
    certfile = ssl_certfile or settings.ssl_certfile
    keyfile = ssl_keyfile or settings.ssl_keyfile
    if keyfile and not certfile:
        _say("--ssl-keyfile needs --ssl-certfile (PAYMENTD_SSL_CERTFILE)")
        raise typer.Exit(2)
    for path in (certfile, keyfile):
        if path is not None and not path.is_file():
            _say(f"no such file: {path}")
            raise typer.Exit(2)
    scheme = "https" if certfile else "http"
    tls_options = {}
    if certfile:
        password = settings.ssl_keyfile_password.get_secret_value() if settings.ssl_keyfile_password else None
        tls_options = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile) if keyfile else None,
                       "ssl_keyfile_password": password, "ssl_context_factory": server_context}
    # uvicorn raises SIGTERM again once it has shut down: it must unwind through the
    # `finally`s below (the simulator saves its state, the embedded PostgreSQL stops).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sim = None
    if settings.sandbox and not settings.stripe_api_base:
        import stripe_sim

        # The simulator signs and delivers its events to this server, as Stripe would.
        hook_secret = (settings.stripe_webhook_secrets or [f"whsec_sandbox_{secrets.token_hex(16)}"])[0]
        hook_host = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host
        # Over TLS the simulator trusts exactly the certificate served (it may be self-issued).
        # Its objects live in the data folder beside paymentd's records: a payment made before a
        # restart can be refunded after it, a saved card still pays (stripe_sim/persist.py).
        sim = stripe_sim.start_in_thread(host="127.0.0.1", port=0, webhook_secret=hook_secret,
                                         webhook_url=f"{scheme}://{hook_host}:{port}/api/webhooks/stripe",
                                         webhook_trust_file=str(certfile) if certfile else None,
                                         state_file=str(sandbox_state(settings)))
        os.environ["STRIPE_API_BASE"] = sim.url
        os.environ["STRIPE_WEBHOOK_SECRET"] = ",".join(settings.stripe_webhook_secrets or [hook_secret])
    with database_url(settings) as url:
        os.environ["DATABASE_URL"] = url  # workers read their settings from the environment
        # Before any process imports prometheus_client: every worker writes its metrics there.
        multiproc.prepare(settings.metrics_dir or settings.data_dir / "metrics", clean=True)
        upgrade(url)
        demo_key, reused = _demo_key(url, settings.data_dir) if settings.sandbox else (None, False)
        get_settings.cache_clear()
        _say(f"paymentd listening on {scheme}://{host}:{port}  (docs: {scheme}://{host}:{port}/docs)"
             + ("  TLS 1.2+ only" if certfile else ""))
        if sim is not None:
            _say(f"SANDBOX MODE: no STRIPE_API_KEY set; using the Stripe simulator at {sim.url}. No money moves.")
        if demo_key:
            _say(f"demo API key (account {DEMO_ACCOUNT!r}, all scopes): {demo_key}"
                 + (f"  (the same as last time; kept in {settings.data_dir / DEMO_KEY_FILE})" if reused else ""))
            _say(f"dashboard: {scheme}://{host}:{port}/dashboard  (sign in with the demo key)")
        # The worker runs inside each API process (app.py lifespan), so it lives and
        # restarts with them, whatever --workers says.
        _say("background jobs: a worker runs in each API process" if settings.run_worker
             else "background jobs: PAYMENTD_RUN_WORKER=false, run `paymentd worker` beside this")
        try:
            # SIGTERM drains (drain.py): /readyz 503 for PAYMENTD_DRAIN_DELAY_S, then the
            # requests in flight get up to PAYMENTD_SHUTDOWN_TIMEOUT_S.
            drain.run(uvicorn.Config(
                "paymentd.app:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                access_log=False,
                timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
                forwarded_allow_ips=forwarded_allow_ips or settings.forwarded_allow_ips,
                **tls_options,
            ), delay_s=settings.drain_delay_s)
        finally:
            if sim is not None:
                sim.stop()


SANDBOX_STATE = "stripe-sim-state.json"


def sandbox_state(settings: Settings) -> Path:
    """Where the sandbox's simulator keeps its objects: the data folder, beside the
    embedded PostgreSQL. Made before the simulator starts, readable by its owner only."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return (settings.data_dir / SANDBOX_STATE).resolve()


def _background(settings: Settings, url: str, work):  # type: ignore[no-untyped-def]
    """Run `work(jobs, deps)` with the queue, database and provider opened for it."""
    from paymentd.app import build_provider
    from paymentd.jobs.deps import Deps
    from paymentd.jobs.queue import Jobs

    logs.configure(settings.log_level, json=settings.log_json)  # on stderr: stdout is for what scripts read

    async def main():  # type: ignore[no-untyped-def]
        crypto.install(settings, url)
        database = Database(url, pool_size=10)
        provider = build_provider(settings)
        jobs = Jobs(url, reconcile_interval_s=settings.reconcile_interval_s,
                    webhooks_sweep_interval_s=settings.webhooks_sweep_interval_s,
                    audit_checkpoint_interval_s=settings.audit_checkpoint_interval_s)
        await jobs.open()
        try:
            return await work(jobs, Deps(database, provider, settings))
        finally:
            await jobs.close()
            await provider.aclose()
            await database.dispose()

    return _run(main())


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Jobs run at the same time")] = 4,
) -> None:
    """Run the background job worker (webhook events, reconciler, cleanup) until SIGTERM/SIGINT."""
    settings = get_settings()
    # Its counts join a `serve` on this machine that shares the folder (PAYMENTD_METRICS_DIR).
    multiproc.prepare(settings.metrics_dir or settings.data_dir / "metrics", clean=False)
    with database_url(settings) as url:
        upgrade(url)
        audit_signing.require_configured(settings)
        _say("paymentd worker started")
        try:
            _background(settings, url, lambda jobs, deps: _supervised_worker(jobs, deps, concurrency, settings))
        finally:
            from paymentd import metrics

            metrics.process_exit()
    _say("paymentd worker stopped")


async def _supervised_worker(jobs, deps, concurrency: int, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """The worker until SIGTERM/SIGINT. PostgreSQL restarting stops procrastinate's worker
    by itself: it is started again (supervise_worker); only a signal ends it. On a signal no
    new job is fetched; running ones get PAYMENTD_SHUTDOWN_TIMEOUT_S, then are cancelled and
    retried by another worker (procrastinate's shutdown abort)."""
    from paymentd.jobs.queue import supervise_worker

    worker = asyncio.create_task(supervise_worker(
        jobs, deps, concurrency=concurrency, name="paymentd-worker",
        shutdown_graceful_timeout=settings.shutdown_timeout_s))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.cancel)
    try:
        await worker
    except asyncio.CancelledError:
        pass


@app.command()
def reconcile() -> None:
    """Run one reconciler sweep now; prints its report (JSON) on stdout."""
    from paymentd.jobs import reconciler

    settings = get_settings()
    with database_url(settings) as url:
        upgrade(url)
        report = _background(settings, url, lambda jobs, deps: reconciler.sweep(deps))
    typer.echo(json.dumps(report.as_dict()))


@jobs_app.command("failed")
def jobs_failed(limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 100) -> None:
    """List the dead letters: jobs whose retries ran out (procrastinate status `failed`)."""
    settings = get_settings()
    with database_url(settings) as url:
        failed = _background(settings, url, lambda jobs, deps: jobs.failed_jobs(limit))
    for job in failed:
        typer.echo(json.dumps({"id": job.id, "task": job.task, "args": job.args, "attempts": job.attempts,
                               "queue": job.queue}))
    if not failed:
        _say("no failed jobs")


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[int, typer.Argument(help="Id of a failed job")]) -> None:
    """Put a failed job back in the queue (once its cause is fixed)."""
    settings = get_settings()
    with database_url(settings) as url:
        _background(settings, url, lambda jobs, deps: jobs.retry_failed(job_id))
    _say(f"job {job_id} queued again")


async def _with_database(url: str, work):  # type: ignore[no-untyped-def]
    crypto.install(get_settings(), url)
    database = Database(url, pool_size=2)
    try:
        return await work(database)
    finally:
        await database.dispose()


@audit_app.command("verify")
def audit_verify() -> None:
    """Check every chain and signed checkpoint; names the first entry that does not verify (exit 1)."""
    from paymentd.audit import signing, verify

    settings = get_settings()
    public = signing.public_hex(signing.load(settings))
    with database_url(settings) as url:
        report = _run(_with_database(url, lambda db: verify.verify(db, public)))
    if not report.ok:
        _say(report.summary())
        raise typer.Exit(1)
    typer.echo(report.summary())


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign every chain's head now (the worker also does it periodically)."""
    from paymentd.audit import checkpoints, signing

    settings = get_settings()
    key = signing.load(settings)
    with database_url(settings) as url:
        upgrade(url)
        written = _run(_with_database(url, lambda db: checkpoints.write(db, key)))
    _say(f"{written} checkpoints signed")


@audit_app.command("export")
def audit_export(
    start: Annotated[datetime, typer.Option("--from", help="First instant (UTC unless given)")],
    end: Annotated[datetime, typer.Option("--to", help="Instant after the last")],
    out: Annotated[str | None, typer.Option(help="File to write (default: stdout)")] = None,
) -> None:
    """Entries of [from, to) as JSON lines with signed chain heads; check with scripts/verify_audit_export.py."""
    from paymentd.audit import export, signing

    settings = get_settings()
    key = signing.load(settings)
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    with database_url(settings) as url:
        if out is None:
            count = _run(_with_database(url, lambda db: export.export(db, key, start, end, sys.stdout)))
        else:
            with open(out, "w", encoding="utf-8") as file:
                count = _run(_with_database(url, lambda db: export.export(db, key, start, end, file)))
    _say(f"{count} entries exported")


@audit_app.command("public-key")
def audit_public_key() -> None:
    """Print the public half of the signing key (hex), for scripts/verify_audit_export.py."""
    from paymentd.audit import signing

    typer.echo(signing.public_hex(signing.load(get_settings())))


@audit_app.command("new-key")
def audit_new_key() -> None:
    """Print a new Ed25519 signing key (PEM) for PAYMENTD_AUDIT_SIGNING_KEY_FILE."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from paymentd.audit import signing

    typer.echo(signing.pem(Ed25519PrivateKey.generate()), nl=False)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """A new primary data key; queues the job that re-encrypts every row under it (prints the key id)."""
    from paymentd.crypto import admin

    settings = get_settings()
    with database_url(settings) as url:
        upgrade(url)

        async def work(jobs, deps):  # type: ignore[no-untyped-def]
            new = await admin.rotate(deps.database)
            await jobs.defer_reencrypt()
            return new

        new = _background(settings, url, work)
    _say(f"new primary key {new}; re-encryption queued (see `paymentd keys status`)")
    typer.echo(new)


@keys_app.command("reencrypt")
def keys_reencrypt() -> None:
    """Re-encrypt every row under the primary key now, in this process (what rotate queues)."""
    from paymentd.crypto import reencrypt

    settings = get_settings()
    with database_url(settings) as url:
        result = _background(settings, url, lambda jobs, deps: reencrypt.reencrypt(
            deps.database, refresh_s=settings.encryption_refresh_s))
    typer.echo(json.dumps(result))


@keys_app.command("status")
def keys_status() -> None:
    """The data keys, and how many rows each protects per table and column (JSON)."""
    from paymentd.crypto import admin

    settings = get_settings()
    with database_url(settings) as url:
        found = _background(settings, url, lambda jobs, deps: admin.status(deps.database))
    typer.echo(json.dumps({"keys": found.keys, "rows": found.rows}, indent=2))


@keys_app.command("retire")
def keys_retire(key_id: Annotated[str, typer.Argument(help="A data key id (from `keys status`)")]) -> None:
    """Destroy a data key. Refused while any row is still sealed under it."""
    from paymentd.crypto import admin

    settings = get_settings()
    with database_url(settings) as url:
        try:
            _background(settings, url, lambda jobs, deps: admin.retire(
                deps.database, key_id, refresh_s=settings.encryption_refresh_s))
        except admin.RetireRefused as error:
            _say(f"refused: {error}")
            raise typer.Exit(1) from None
    _say(f"key {key_id} retired")


@keys_app.command("rewrap")
def keys_rewrap() -> None:
    """Wrap every data key under the first key of PAYMENTD_ENCRYPTION_KEYS (a KEK rotation)."""
    from paymentd.crypto import admin

    settings = get_settings()
    with database_url(settings) as url:
        done = _background(settings, url, lambda jobs, deps: admin.rewrap(deps.database))
    _say(f"{done} data keys rewrapped")


DEMO_KEY_FILE = "demo-api-key"


def _demo_key(url: str, data_dir: Path) -> tuple[str, bool]:
    """The sandbox's demo key and whether it is the one kept from an earlier start. Kept in
    the data folder (0600) so every start shows the same key; a kept key that no longer
    works (revoked, expired, another database) is replaced, and any other live demo key
    revoked: they never pile up."""
    path = data_dir / DEMO_KEY_FILE
    try:
        kept = path.read_text().strip() or None
    except FileNotFoundError:
        kept = None

    async def work(session):  # type: ignore[no-untyped-def]
        account = await auth_service.get_or_create_account(session, DEMO_ACCOUNT)
        if kept is not None:
            row = await auth_service.find_key(session, kept)
            if (row is not None and row.account_id == account.id and row.revoked_at is None
                    and (row.expires_at is None or row.expires_at > datetime.now(UTC))):
                return kept, True
        for old, _ in await auth_service.list_keys(session, DEMO_ACCOUNT):
            if old.name == "demo" and old.revoked_at is None:
                await auth_service.revoke_key(session, str(old.id))
        _, secret = await auth_service.create_key(session, DEMO_ACCOUNT, list(Scope), name="demo")
        return secret, False

    try:
        secret, reused = _run(_with_session(url, work))
    except (sa_exc.IntegrityError, auth_service.AccountExists):
        # Another `serve` starting at the same moment created the demo account first
        # (caught by the unique index, or seen by create_account's own check).
        secret, reused = _run(_with_session(url, work))
    if not reused:
        data_dir.mkdir(parents=True, exist_ok=True)
        fresh = path.with_suffix(".new")
        fresh.unlink(missing_ok=True)
        with os.fdopen(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secret + "\n")
        fresh.replace(path)
    return secret, reused


if __name__ == "__main__":
    app()
