"""End-to-end throughput benchmark of stripe_sim: create+confirm pairs per second, empty and with 100k stored.

Starts ONE simulator process (`python -m stripe_sim`, zero latency), drives it
with wrk from another process (bench/sim_pairs.lua: create a PaymentIntent,
then confirm it), and measures:
  1. the ceiling: wrk against the trivial /_sim/health endpoint,
  2. pairs/s and RSS with an almost empty store,
  3. pairs/s and RSS once at least 100,000 PaymentIntents are stored.
Writes a Markdown report to bench/results/sim-throughput-<date>.md.

Usage: python bench/sim_throughput.py [--seconds 20] [--connections 16] [--stored 100000]
Needs wrk (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LUA = BENCH / "sim_pairs.lua"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def get_json_post(url: str) -> dict:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def start_sim(port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, "-m", "stripe_sim", "--host", "127.0.0.1", "--port", str(port),
                                "--log-level", "warning"], env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            get_json(f"http://127.0.0.1:{port}/_sim/health")
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("simulator did not start")


def wrk(url: str, seconds: float, threads: int, connections: int, script: Path | None = None) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if script:
        command += ["-s", str(script)]
    command.append(url)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    return {
        "command": " ".join(command),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else "none",
        "p50": latency.get("50"), "p99": latency.get("99"),
    }


def measured_pairs(base: str, seconds: float, threads: int, connections: int) -> dict:
    """Run the pair workload; pairs/s counts charges created (one per successful confirm)."""
    before = get_json(base + "/_sim/stats")
    started = time.monotonic()
    result = wrk(base, seconds, threads, connections, LUA)
    elapsed = time.monotonic() - started
    after = get_json(base + "/_sim/stats")
    result["pairs_per_s"] = (after["objects"]["charges"] - before["objects"]["charges"]) / elapsed
    result["stored_before"] = before["objects"]["payment_intents"]
    result["stored_after"] = after["objects"]["payment_intents"]
    result["rss_mb_after"] = after["rss_kb"] / 1024
    return result


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=True).stdout.rstrip()
    load = Path("/proc/loadavg").read_text().strip()
    return (f"- nproc: {os.cpu_count()}\n- CPU: {cpu}\n- load average at start: {load}\n"
            f"- Python {sys.version.split()[0]}, uvicorn + uvloop + httptools, one simulator process\n\n"
            f"```\n$ free -h\n{free}\n```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found (apt-get install -y wrk)")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    header = machine()
    sim = start_sim(port)
    try:
        rss_start = get_json(base + "/_sim/stats")["rss_kb"] / 1024
        wrk(base, 3, args.threads, args.connections, LUA)  # warm-up
        get_json_post(base + "/_sim/reset")
        ceiling = wrk(base + "/_sim/health", args.seconds, args.threads, args.connections)
        empty = measured_pairs(base, args.seconds, args.threads, args.connections)
        fill_started = time.monotonic()
        while get_json(base + "/_sim/stats")["objects"]["payment_intents"] < args.stored:
            wrk(base, 10, args.threads, args.connections, LUA)
        fill_s = time.monotonic() - fill_started
        full = measured_pairs(base, args.seconds, args.threads, args.connections)
        ceiling_after = wrk(base + "/_sim/health", args.seconds, args.threads, args.connections)
        stats = get_json(base + "/_sim/stats")
    finally:
        sim.terminate()
        sim.wait(10)

    report = render(args, header, rss_start, ceiling, empty, full, ceiling_after, stats, fill_s)
    out = args.out or BENCH / "results" / f"sim-throughput-{datetime.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    print(f"written to {out}")


def render(args, header, rss_start, ceiling, empty, full, ceiling_after, stats, fill_s) -> str:
    def row(name: str, r: dict, pairs: bool) -> str:
        pair_cell = f"{r['pairs_per_s']:,.0f}" if pairs else "-"
        return (f"| {name} | {r['rps']:,.0f} | {pair_cell} | {r['p50']} | {r['p99']} | {r['non_2xx']} | "
                f"{r['socket_errors']} |")

    per_pi_kb = (full["rss_mb_after"] - rss_start) * 1024 / max(full["stored_after"], 1)
    return f"""# stripe_sim throughput, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC

Command: `python bench/sim_throughput.py --seconds {args.seconds:g} --threads {args.threads} \
--connections {args.connections} --stored {args.stored}`

Load generator: wrk in its own process ({args.threads} thread, {args.connections} connections), script
`bench/sim_pairs.lua` (POST /v1/payment_intents with `payment_method=pm_card_visa`, then
POST /v1/payment_intents/{{id}}/confirm; a fresh Idempotency-Key on every request, as the SDK sends).
Simulator: one `python -m stripe_sim` process, zero latency, no faults, default knobs.
wrk and the simulator share the machine's cores.

## Machine

{header}

## Results

| run | requests/s | create+confirm pairs/s | p50 | p99 | non-2xx | socket errors |
|---|---|---|---|---|---|---|
{row("ceiling: GET /_sim/health (empty store)", ceiling, False)}
{row(f"pairs, store {empty['stored_before']:,} -> {empty['stored_after']:,} PaymentIntents", empty, True)}
{row(f"pairs, store {full['stored_before']:,} -> {full['stored_after']:,} PaymentIntents", full, True)}
{row("ceiling again: GET /_sim/health (full store)", ceiling_after, False)}

- Pairs run at {empty['rps'] / ceiling['rps']:.0%} of the health-endpoint ceiling with an empty store, and
  {full['rps'] / ceiling_after['rps']:.0%} of it with {full['stored_before']:,}+ stored
  (throughput ratio full/empty: {full['pairs_per_s'] / empty['pairs_per_s']:.2f}).
- RSS: {rss_start:.0f} MB at start, {empty['rss_mb_after']:.0f} MB after the first run,
  {full['rss_mb_after']:.0f} MB with {full['stored_after']:,} PaymentIntents stored
  (about {per_pi_kb:.1f} KB per PaymentIntent, including its PaymentMethod, Charge, 3 events and 2 saved
  idempotent responses). Filling to {args.stored:,} took {fill_s:.0f} s.
- Objects at the end: `{json.dumps(stats['objects'])}`, idempotency keys: {stats['idempotency_keys']:,}.
- Load average at the end: {Path("/proc/loadavg").read_text().strip()} (the machine is shared; compare
  each run with the ceiling measured in the same run rather than across days).
"""


if __name__ == "__main__":
    main()
