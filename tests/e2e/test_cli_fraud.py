"""`paymentd account set-fraud`: an account's review deadline and early fraud warning refunds,
changed from the command line, refused when out of range, audited as the operator's."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.e2e.test_cli import clean_env, run


def _settings(database_url: str, name: str) -> tuple:
    async def read() -> tuple:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT id, review_deadline_hours, review_deadline_action,"
                                      " auto_refund_early_fraud_warnings FROM accounts WHERE name = $1", name)
            actors = await conn.fetch("SELECT actor_type FROM audit_entries WHERE action ="
                                      " 'account.fraud_settings_changed' AND object_id = $1", str(row["id"]))
        finally:
            await conn.close()
        return tuple(row)[1:], [a["actor_type"] for a in actors]

    return asyncio.run(read())


def test_set_fraud_changes_refuses_and_audits(database_url: str) -> None:
    env = clean_env(DATABASE_URL=database_url)
    assert run("account", "create", "cli-fraud", env=env).returncode == 0
    assert _settings(database_url, "cli-fraud") == ((None, None, True), [])

    done = run("account", "set-fraud", "cli-fraud", "--review-deadline-hours", "48", "--review-deadline-action",
               "approve", "--no-auto-refund-warnings", env=env)
    assert done.returncode == 0, done.stderr
    assert _settings(database_url, "cli-fraud") == ((48, "approve", False), ["operator"])

    for bad in (["--review-deadline-hours", "0"], ["--review-deadline-hours", "721"],
                ["--review-deadline-action", "maybe"]):
        assert run("account", "set-fraud", "cli-fraud", *bad, env=env).returncode != 0, bad
    assert run("account", "set-fraud", "nobody-here", "--no-auto-refund-warnings", env=env).returncode == 1
    assert _settings(database_url, "cli-fraud")[0] == (48, "approve", False)

    assert run("account", "set-fraud", "cli-fraud", "--default", env=env).returncode == 0
    assert _settings(database_url, "cli-fraud") == ((None, None, True), ["operator", "operator"])
