"""The seed's scenario: 1,000 concurrent transactions (create + confirm + get) against a
Stripe that answers in 0.3 s (median; lognormal, p99 1.2 s) and allows 100 requests a second.

One run starts the simulator and two paymentd processes sharing Redis and a fresh
database (tests/support/cluster.py), then load-generator processes start all
1,000 transactions at once, each create -> confirm -> get, retrying transient
answers with the same Idempotency-Key as a careful client would. It reports:

- p50/p99 of every client request, per kind (target: p99 under 500 ms);
- the most requests "Stripe" saw in any one-second window (never above 100);
- time until every payment settled, against the least possible: Stripe calls / 100 per s;
- lost payments (not settled) and duplicated ones (two PaymentIntents, or an intent
  confirmed under two keys) at the simulator: both must be zero.

Baseline measured in the same run: the same create + confirm made straight to the
simulator, one at a time, i.e. the Stripe latency paymentd answers ahead of.

    .venv/bin/python bench/seed_scenario.py [--transactions 1000] [--servers 2] [--rate 45]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from core_latency import machine  # noqa: E402
from tests.support.cluster import cluster, duplicates_at_stripe, max_per_second  # noqa: E402

ADMIN_URL = os.environ.get("PAYMENTD_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TRANSIENT = {409, 429, 502, 503, 504}
MAX_TRIES = 30
LATENCY = {"latency_ms": 300, "latency_p99_ms": 1200}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ----------------------------------------------------------------- load generator (own process)


async def _drive(url: str, key: str, user_id: str, count: int, rate: float, out: mp.Queue) -> None:
    samples: list[tuple[str, float, str]] = []  # kind, ms, status (a refusal with its error code)
    answered: list[tuple[str, float]] = []  # each step from its first try to its final answer
    # aiohttp: about a fifth of httpx's CPU per request, and the generators share the two
    # cores with everything they measure.
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {key}"},
                                     connector=aiohttp.TCPConnector(limit=count),
                                     timeout=aiohttp.ClientTimeout(total=120)) as client:

        async def call(kind: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict] | None:
            idem = str(uuid.uuid4())
            first_try = time.perf_counter()
            for _ in range(MAX_TRIES):
                started = time.perf_counter()
                try:
                    headers = {} if method == "GET" else {"Idempotency-Key": idem}
                    async with client.request(method, path, json=body, headers=headers) as response:
                        status, answer, retry_after = response.status, await response.json(), response.headers.get(
                            "retry-after", "0.5")
                except (aiohttp.ClientError, TimeoutError):
                    samples.append((kind, (time.perf_counter() - started) * 1000, "0"))
                    await asyncio.sleep(0.5)
                    continue
                code = answer.get("error", {}).get("code") if status >= 500 and isinstance(answer, dict) else None
                samples.append((kind, (time.perf_counter() - started) * 1000, f"{status} {code}" if code else str(status)))
                if status not in TRANSIENT:
                    answered.append((kind, (time.perf_counter() - first_try) * 1000))
                    return status, answer
                await asyncio.sleep(float(retry_after))
            return None  # gave up: counted as a client-visible failure

        async def transaction() -> str | None:
            created = await call("create", "POST", "/api/payments/create", {"user_id": user_id, "amount": "10.00"})
            if created is None or created[0] != 201:
                return None
            payment_id = created[1]["id"]
            await call("confirm", "POST", "/api/payments/confirm",
                       {"payment_id": payment_id, "payment_method": "pm_card_visa"})
            await call("get", "GET", f"/api/payments/{payment_id}")
            return payment_id

        async def paced(i: int) -> str | None:
            # Open loop: transaction i starts at i / rate whatever the others do;
            # rate 0 starts them all at once (the burst the seed scenario describes).
            if rate:
                await asyncio.sleep(i / rate)
            return await transaction()

        ids = await asyncio.gather(*[paced(i) for i in range(count)])
    out.put((samples, [i for i in ids if i], answered))


def _generator(url: str, key: str, user_id: str, count: int, rate: float, out: mp.Queue, start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    asyncio.run(_drive(url, key, user_id, count, rate, out))


# ----------------------------------------------------------------- baseline: straight to "Stripe"


def baseline(sim_url: str, n: int = 40) -> dict[str, list[float]]:
    import stripe

    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": sim_url}, max_network_retries=0)
    out: dict[str, list[float]] = {"create": [], "confirm": []}
    for _ in range(n):
        t = time.perf_counter()
        intent = client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd"})
        out["create"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
        out["confirm"].append((time.perf_counter() - t) * 1000)
    return out


# ----------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=2, help="paymentd processes sharing Redis")
    parser.add_argument("--generators", type=int, default=4, help="load-generator processes")
    parser.add_argument("--rps", type=int, default=100, help="Stripe's limit")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="transactions started per second (open loop); 0 starts all at once")
    parser.add_argument("--max-in-flight", type=int, default=None,
                        help="paymentd's PAYMENTD_MAX_IN_FLIGHT (default: paymentd's own)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the database behind for inspection")
    args = parser.parse_args()
    command = shlex.join([Path(sys.executable).name, *sys.argv])

    db = f"paymentd_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"
    from paymentd.migrate import upgrade

    upgrade(database_url)
    try:
        knobs = {**LATENCY, "rate_limit_rps": args.rps, "seed": 1}
        env = {"PAYMENTD_MAX_IN_FLIGHT": str(args.max_in_flight)} if args.max_in_flight is not None else None
        with cluster(database_url, servers=args.servers, stripe_rps=args.rps, sim_knobs=knobs, env=env) as c:
            base = baseline(c.sim_url)
            httpx.delete(f"{c.sim_url}/_sim/requests")
            user = httpx.post(f"{c.urls[0]}/api/users", json={"email": "b@x.co", "name": "Bench"},
                              headers={"Authorization": f"Bearer {c.key}"}).json()
            queue: mp.Queue = mp.get_context("spawn").Queue()
            share = args.transactions // args.generators
            start_at = time.time() + 3  # every generator starts its share at the same instant
            procs = [
                mp.get_context("spawn").Process(
                    target=_generator,
                    args=(c.urls[i % len(c.urls)], c.key, user["id"], share, args.rate / args.generators, queue, start_at))
                for i in range(args.generators)
            ]
            for p in procs:
                p.start()
            results = [queue.get(timeout=600) for _ in procs]
            for p in procs:
                p.join()
            samples = [s for r in results for s in r[0]]
            ids = [i for r in results for i in r[1]]
            answered = [a for r in results for a in r[2]]
            settled_at = _wait_settled(database_url, ids, start_at)
            log = c.sim_log()
    finally:
        if args.keep:
            print(f"kept database {database_url}", file=sys.stderr)
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    api = [r for r in log if r["path"].startswith("/v1/")]
    report = _report(args, command, samples, ids, answered, settled_at, api, log, base)
    mode = "burst" if not args.rate else f"rate{args.rate:g}"
    out = args.out or ROOT / "bench" / "results" / f"seed-scenario-{mode}-{dt.date.today().isoformat()}.md"
    out.write_text(report)
    print(report)


def _wait_settled(database_url: str, ids: list[str], start_at: float, timeout: float = 300) -> dict[str, float | int]:
    deadline = time.time() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            final = conn.execute(
                "SELECT count(*) FROM payments WHERE id = ANY(%s::uuid[]) AND status IN "
                "('succeeded', 'requires_payment_method', 'canceled')", (ids,)
            ).fetchone()[0]
            if final == len(ids) or time.time() > deadline:
                succeeded = conn.execute(
                    "SELECT count(*) FROM payments WHERE id = ANY(%s::uuid[]) AND status = 'succeeded'", (ids,)
                ).fetchone()[0]
                return {"seconds": time.time() - start_at, "final": final, "succeeded": succeeded}
            time.sleep(0.5)


def _report(args, command, samples, ids, answered, settled, api, log, base) -> str:  # type: ignore[no-untyped-def]
    info = machine()
    rows = []
    for kind in ("create", "confirm", "get"):
        ms = [m for k, m, _ in samples if k == kind]
        statuses: dict[str, int] = {}
        for k, _, status in samples:
            if k == kind:
                statuses[status] = statuses.get(status, 0) + 1
        rows.append(f"| {kind} | {len(ms)} | {percentile(ms, 0.5):.0f} | {percentile(ms, 0.99):.0f} | "
                    f"{max(ms) if ms else float('nan'):.0f} | {', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))} |")
    everything = [m for _, m, _ in samples]
    steps = []
    for kind in ("create", "confirm", "get"):
        ms = [m for k, m in answered if k == kind]
        steps.append(f"| {kind} | {len(ms)} | {percentile(ms, 0.5):.0f} | {percentile(ms, 0.99):.0f} | "
                     f"{max(ms) if ms else float('nan'):.0f} |")
    calls = len(api)
    least = calls / args.rps
    dup = duplicates_at_stripe(log)
    lost = len(ids) - settled["final"] + (args.transactions - len(ids))
    return "\n".join([
        f"# Seed scenario: {args.transactions} concurrent transactions ({dt.date.today().isoformat()})",
        "",
        f"- Command: `{command}`",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, Python {info['python']};"
        " shared by the simulator, PostgreSQL, Redis, both paymentd processes and the load generators",
        f"- Arrival: {'all ' + str(args.transactions) + ' at once' if not args.rate else f'{args.rate:g} transactions/s, open loop'}",
        f"- Set-up: {args.servers} paymentd processes sharing Redis, {args.generators} load-generator processes;"
        f" simulator latency lognormal median 300 ms, p99 1.2 s; Stripe limit {args.rps}/s (enforced by the"
        " simulator too); default response budget 400 ms; admission: "
        + (f"PAYMENTD_MAX_IN_FLIGHT={args.max_in_flight}" if args.max_in_flight is not None else "paymentd's default"),
        "",
        "## Client requests (ms, every request including retried transient answers)",
        "",
        "| request | count | p50 | p99 | max | statuses |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        *rows,
        f"| **all** | {len(everything)} | {percentile(everything, 0.5):.0f} | {percentile(everything, 0.99):.0f} |"
        f" {max(everything):.0f} | target p99 < 500: **{'met' if percentile(everything, 0.99) < 500 else 'missed'}** |",
        "",
        "## Each step as the client lived it (ms, from its first try to its final answer: retries of 503s",
        "and the waits their Retry-After asked for included)",
        "",
        "| step | answered | p50 | p99 | max |",
        "| --- | ---: | ---: | ---: | ---: |",
        *steps,
        "",
        "## Baseline in the same run: straight to the simulator, one call at a time (ms)",
        "",
        f"| create p50 {percentile(base['create'], 0.5):.0f} | p99 {percentile(base['create'], 0.99):.0f} |"
        f" confirm p50 {percentile(base['confirm'], 0.5):.0f} | p99 {percentile(base['confirm'], 0.99):.0f} |",
        "",
        "## At \"Stripe\"",
        "",
        f"- Requests: {calls}; most in any one-second window: **{max_per_second([r['timestamp'] for r in api])}**"
        f" (limit {args.rps}); 429s: {sum(r['status'] == 429 for r in api)}",
        f"- All {len(ids)} payments final after **{settled['seconds']:.1f} s**; least possible at {args.rps}/s for"
        f" these {calls} calls: {least:.1f} s (ratio {settled['seconds'] / least:.2f})",
        f"- Succeeded: {settled['succeeded']}; lost (never final): **{lost}**; duplicated: "
        f"**{dup['payments_with_two_intents'] + dup['intents_confirmed_twice']}** ({dup})",
        "",
        "```",
        "$ free -h",
        info["free"],
        "```",
        "",
    ])


if __name__ == "__main__":
    main()
