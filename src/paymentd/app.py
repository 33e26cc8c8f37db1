"""FastAPI factory: routers, the error envelope on every failure, and the lifespan
that opens the database and the payment provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from paymentd import __version__, crypto, drain, logs, metrics, scrape
from paymentd.admission import Admission, AdmissionMiddleware
from paymentd.audit import failures as audit_failures
from paymentd.audit import signing as audit_signing
from paymentd.audit.routes import router as audit_router
from paymentd.auth.cache import Authenticator
from paymentd.auth.middleware import AccessMiddleware
from paymentd.auth.throttle import Throttle
from paymentd.auth.usage import KeyUsage
from paymentd.config import Settings, get_settings
from paymentd.dashboard.routes import install_dashboard
from paymentd.db import Database
from paymentd.docs import install_docs
from paymentd.drain import DrainMiddleware
from paymentd.errors import InvalidRequest, MethodNotAllowed, NotFound, PaymentdError
from paymentd.http import EdgeMiddleware, unexpected_error
from paymentd.idempotency import IdempotencyMiddleware, IdempotencyStore
from paymentd.jobs.deps import Deps
from paymentd.jobs.queue import Jobs, stop_worker, supervise_worker
from paymentd.logs import log
from paymentd.outbound.endpoints import Endpoints
from paymentd.outbound.routes import router as outbound_router
from paymentd.outbound.runtime import Runtime as OutboundRuntime
from paymentd.payments.routes import router as payments_router
from paymentd.payments.service import PaymentService
from paymentd.fraud import geo
from paymentd.fraud.gate import FraudGate
from paymentd.fraud.rules_routes import router as rules_router
from paymentd.providers.base import PaymentProvider
from paymentd.providers.guard import build_guarded_provider
from paymentd.providers.stripe import StripeProvider
from paymentd.receipts.routes import router as receipts_router
from paymentd.refunds.routes import router as refunds_router
from paymentd.fraud.routes import router as reviews_router
from paymentd.fraud.service import ReviewService
from paymentd.refunds.service import RefundService
from paymentd.reports.routes import router as reports_router
from paymentd.routing import FixedPathMethods
from paymentd.users.payment_methods_routes import router as payment_methods_router
from paymentd.users.routes import router as users_router
from paymentd.validation import validation_error
from paymentd.webhooks.routes import router as webhooks_router

SANDBOX_KEY = "sk_test_paymentd_sandbox"


def build_provider(settings: Settings) -> PaymentProvider:
    """Stripe behind the shared rate limit and the circuit breaker."""
    key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else SANDBOX_KEY
    stripe_provider = StripeProvider(
        key,
        api_base=settings.stripe_api_base,
        webhook_secrets=settings.stripe_webhook_secrets,
        max_network_retries=settings.stripe_max_network_retries,
        timeout=settings.stripe_timeout_s,
    )
    return build_guarded_provider(stripe_provider, settings)


def create_app(settings: Settings | None = None, *, provider: PaymentProvider | None = None,
               outbound: OutboundRuntime | None = None) -> FastAPI:
    """`outbound`: the webhooks' resolver and clock (tests inject theirs)."""
    settings = settings or get_settings()
    outbound = outbound or OutboundRuntime()
    logs.configure(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise RuntimeError("DATABASE_URL is not set: start paymentd with `paymentd serve` for embedded defaults.")
        if settings.sandbox and not settings.stripe_api_base:
            raise RuntimeError("Sandbox mode needs STRIPE_API_BASE (the simulator); `paymentd serve` starts one.")
        audit_signing.require_configured(settings)  # production signs its audit checkpoints with its own key
        # Before any row is read or written: the keys that seal personal data (crypto/).
        # Without a key in production this refuses to start.
        await asyncio.to_thread(crypto.install, settings)
        database = Database(settings.database_url, pool_size=settings.db_pool_size)
        app.state.database = database
        # Failed access is counted in this process and written to the audit trail every few seconds.
        failures = asyncio.create_task(audit_failures.run_flusher(database), name="paymentd-audit-failures")
        key_usage = KeyUsage(database, interval_s=settings.key_usage_flush_s)
        key_usage.start()
        app.state.authenticator = Authenticator(database, ttl_s=settings.auth_cache_s, usage=key_usage)
        app.state.throttle = Throttle(
            redis_url=settings.redis_url,
            default_rps=settings.account_rps,
            auth_fail_limit=settings.auth_fail_limit,
            auth_fail_window_s=settings.auth_fail_window_s,
            key_prefix=settings.redis_key_prefix,
        )
        # The lease outlives the longest request (Prefer: wait is capped by max_wait_s);
        # past it, a request whose process died may be run again under the same seed.
        app.state.idempotency = IdempotencyStore(database, lease=timedelta(seconds=settings.max_wait_s + 5))
        app.state.provider = provider or build_provider(settings)
        fraud = FraudGate(app.state.provider, enabled=settings.fraud_rules_enabled,
                          countries=geo.load(settings.ip_countries_file))
        app.state.payments = PaymentService(
            database, app.state.provider, read_budget_s=settings.sync_budget_ms / 1000 * 0.75, fraud=fraud
        )
        # Shares the payments' background tasks, so shutdown drains refunds in flight too.
        app.state.refunds = RefundService(database, app.state.provider, app.state.payments.background)
        app.state.reviews = ReviewService(database, app.state.payments, app.state.refunds)
        if settings.sandbox:
            log.warning("SANDBOX MODE: no STRIPE_API_KEY; payments go to the Stripe simulator, no money moves",
                        stripe_api_base=settings.stripe_api_base)
        # The job queue (webhooks defer into it). The worker runs as a task in every
        # API process: with `--workers N` that is N workers, which procrastinate is
        # built for, and uvicorn's supervisor restarts it with its process.
        app.state.jobs = Jobs(settings.database_url, reconcile_interval_s=settings.reconcile_interval_s,
                              audit_checkpoint_interval_s=settings.audit_checkpoint_interval_s,
                              webhooks_sweep_interval_s=settings.webhooks_sweep_interval_s)
        app.state.endpoints = Endpoints(database, settings, outbound)
        await app.state.jobs.open()
        worker = None
        if settings.run_worker:
            deps = Deps(database, app.state.provider, settings, outbound)
            worker = asyncio.create_task(supervise_worker(app.state.jobs, deps), name="paymentd-worker")
        try:
            yield
        finally:
            # uvicorn has waited for the requests in flight (drain.py); what is left of the
            # same bound goes to the Stripe calls that outlived their requests.
            stopping = drain.begun_at() or time.monotonic()
            if worker is not None:
                await stop_worker(worker)
            failures.cancel()
            await asyncio.gather(failures, return_exceptions=True)
            await app.state.jobs.close()
            await app.state.payments.background.drain(
                timeout=drain.remaining(stopping, settings.shutdown_timeout_s) or 1.0)
            if provider is None:
                await app.state.provider.aclose()
            await key_usage.stop()
            await app.state.throttle.aclose()
            await database.dispose()
            metrics.process_exit()

    app = FastAPI(
        title="paymentd",
        version=__version__,
        description="Payments between a merchant's applications and Stripe. See API.md for the contract.",
        lifespan=lifespan,
        docs_url=None,  # docs.py serves it without a CDN; no ReDoc (it would need one)
        redoc_url=None,
    )
    app.state.settings = settings
    if settings.max_in_flight:
        # A request may wait for a place half its budget; the other half is for its work.
        app.state.admission = Admission(settings.max_in_flight, max_wait_s=settings.sync_budget_ms / 2000,
                                        reserve=settings.max_in_flight_reserve)
    # Outermost last: the edge (request id, body guard), then authentication and the inbound
    # limits, then admission (which queues per account), then the idempotency claim.
    app.add_middleware(FixedPathMethods)  # innermost: a 405 for a fixed path asked with another method
    app.add_middleware(IdempotencyMiddleware, store_factory=lambda scope: scope["app"].state.idempotency)
    app.add_middleware(AdmissionMiddleware)
    app.add_middleware(AccessMiddleware)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes, hsts=settings.hsts)
    app.add_middleware(DrainMiddleware)  # outermost: even a refused request closes its connection
    _install_error_handlers(app)
    app.include_router(users_router)
    app.include_router(payments_router)
    app.include_router(refunds_router)
    app.include_router(receipts_router)
    app.include_router(reports_router)
    app.include_router(payment_methods_router)
    app.include_router(audit_router)
    app.include_router(reviews_router)
    app.include_router(rules_router)
    app.include_router(outbound_router)
    app.include_router(webhooks_router)  # no API key: Stripe-Signature is its authentication
    _install_operations(app, settings)
    install_docs(app)
    install_dashboard(app)
    return app


def _error_response(request: Request, error: PaymentdError) -> JSONResponse:
    request_id = request.scope.get("state", {}).get("request_id", "")
    return JSONResponse(error.envelope(request_id), status_code=error.status, headers=error.headers())


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PaymentdError)
    async def paymentd_error(request: Request, error: PaymentdError) -> JSONResponse:
        return _error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error_response(request, validation_error(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            mapped: PaymentdError = NotFound("No such route.", code="route_not_found")
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "")
            mapped = MethodNotAllowed(request.method, [m.strip() for m in allowed.split(",") if m.strip()])
        else:
            mapped = InvalidRequest(str(error.detail), code="invalid_request", status=error.status_code)
        return _error_response(request, mapped)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # A backstop: EdgeMiddleware answers these first, with the request id header.
        return _error_response(request, unexpected_error(error))


def _install_operations(app: FastAPI, settings: Settings) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> Response:
        if drain.draining():
            # First thing a SIGTERM changes: the load balancer takes this process out.
            return JSONResponse({"status": "draining", "mode": "sandbox" if settings.sandbox else "live"},
                                status_code=503)
        checks: dict[str, str] = {}
        try:
            async with request.app.state.database.transaction() as session:
                await session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable: {type(error).__name__}"
        provider = request.app.state.provider
        try:
            await provider.ping()
            checks["processor"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["processor"] = f"unavailable: {getattr(error, 'code', None) or type(error).__name__}"
        ready = all(v == "ok" for v in checks.values())
        body = {
            "status": "ready" if ready else "not_ready",
            "mode": "sandbox" if settings.sandbox else "live",
            "checks": checks,
            "circuit": getattr(provider, "circuit_state", "closed"),
        }
        limiter = getattr(provider, "limiter", None)
        if limiter is not None:
            await limiter.probe()  # an idle process learns that Redis is back here
            body["stripe_limiter"] = limiter.describe()
            if ready and limiter.degraded:
                # Still serving (200), at a conservative share of the Stripe limit.
                body["status"] = "degraded"
        if settings.sandbox:
            body["warning"] = "SANDBOX MODE: payments go to the Stripe simulator; no money moves."
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics_text(request: Request) -> Response:
        """Prometheus text format, every process's values added up (README "Metrics")."""
        scrape.check_access(settings, request)
        return await scrape.exposition(request)
