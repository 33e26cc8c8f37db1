"""The folder where each paymentd process keeps its metric values, so `/metrics` can add
them up (prometheus_client's multiprocess mode). Set up by `serve` and `worker` before
anything imports prometheus_client, which picks its mode once, at import: this module
must never import it (nor metrics.py)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(default: Path, *, clean: bool) -> Path:
    """Point this process and its children at the folder (PROMETHEUS_MULTIPROC_DIR if the
    operator set one, else `default`). With `clean`, what processes no longer running left
    there goes: their counts started again anyway when paymentd restarted. Files of live
    processes (a `paymentd worker` beside this server) stay."""
    folder = Path(os.environ.get(ENV) or default).resolve()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if clean:
        for file in folder.glob("*.db"):
            pid = file.stem.rsplit("_", 1)[-1]
            if not pid.isdigit() or not psutil.pid_exists(int(pid)):
                file.unlink(missing_ok=True)
    os.environ[ENV] = str(folder)
    return folder
