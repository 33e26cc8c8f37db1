"""The command line: `python -m stripe_sim` serves, and its flags set the knobs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from stripe_sim.__main__ import _parser, options_from


def test_flags_become_knobs():
    args = _parser().parse_args(["--latency-ms", "5", "--latency-p99-ms", "50", "--error-rate", "0.1",
                                 "--webhook-url", "http://127.0.0.1:1/x", "--webhook-secret", "whsec_x",
                                 "--config", '{"rate_limit_rps": 25}'])
    assert options_from(args) == {"latency_ms": 5.0, "latency_p99_ms": 50.0, "fault_rates": {"api_error": 0.1},
                                  "webhook_url": "http://127.0.0.1:1/x", "webhook_secret": "whsec_x",
                                  "rate_limit_rps": 25}


def test_module_serves_until_terminated():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "stripe_sim", "--port", str(port), "--latency-ms", "1",
                                "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/_sim/config").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, process.stderr.read1().decode() if process.poll() else "slow"
                time.sleep(0.05)
        assert config["latency_ms"] == 1.0
        created = httpx.post(f"http://127.0.0.1:{port}/v1/customers", headers={"Authorization": "Bearer sk_test_1"})
        assert created.status_code == 200 and created.json()["object"] == "customer"
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM as a plain process would.
        assert process.wait(10) in (0, -signal.SIGTERM)
    assert b"Traceback" not in process.stderr.read()
