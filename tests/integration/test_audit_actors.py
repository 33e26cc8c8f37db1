"""Audit entries name who acted: a webhook by its Stripe event id, the reconciler's
sweep, the CLI's operator; disputes opened and closed by webhook."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import uuid


from paymentd.db import Database
from paymentd.jobs.reconciler import sweep
from tests.conftest import Hooked
from tests.integration.test_disputes import charge_of, dispute_shown, paid
from tests.integration.test_webhooks import confirm, eventually, new_payment, status_of


async def audit_rows(database: Database, object_id: str, action: str) -> list:
    async with database.sql_connection() as conn:
        return await conn.fetch("SELECT * FROM audit_entries WHERE object_id = $1 AND action = $2 ORDER BY seq",
                                object_id, action)


async def test_a_webhook_move_names_its_event(hooked: Hooked, api, database: Database) -> None:
    payment = await new_payment(api)
    assert (await confirm(api, payment["id"], "pm_card_threeDSecure2Required")).json()["status"] == "requires_action"
    hooked.sim_post(f"/_sim/payment_intents/{payment['stripe_payment_intent_id']}/authenticate", outcome="succeed")
    await eventually(lambda: _is(database, payment["id"], "succeeded"))
    rows = [r for r in await audit_rows(database, payment["id"], "payment.status_changed")
            if r["changes"]["status"][1] == "succeeded"]
    assert len(rows) == 1
    assert rows[0]["actor_type"] == "webhook" and rows[0]["actor_id"].startswith("evt_")


async def test_a_reconciler_move_names_the_reconciler(hooked: Hooked, api, database: Database, deps,
                                                      webhooks_off) -> None:  # type: ignore[no-untyped-def]
    payment = await new_payment(api)
    assert (await confirm(api, payment["id"], "pm_card_threeDSecure2Required")).json()["status"] == "requires_action"
    hooked.sim_post(f"/_sim/payment_intents/{payment['stripe_payment_intent_id']}/authenticate", outcome="succeed")
    await sweep(deps)
    assert await status_of(database, payment["id"]) == "succeeded"
    rows = [r for r in await audit_rows(database, payment["id"], "payment.status_changed")
            if r["changes"]["status"][1] == "succeeded"]
    assert [(r["actor_type"], r["actor_id"]) for r in rows] == [("reconciler", None)]


async def test_a_dispute_opened_and_closed(hooked: Hooked, api, database: Database) -> None:
    payment = await paid(api)
    opened = hooked.sim_post(f"/_sim/charges/{charge_of(hooked, payment['stripe_payment_intent_id'])}/dispute",
                             reason="fraudulent")
    await eventually(lambda: dispute_shown(api, payment["id"], "disputed", status="needs_response"))
    hooked.sim_post(f"/_sim/disputes/{opened['id']}/close", outcome="won")
    await eventually(lambda: dispute_shown(api, payment["id"], "succeeded", status="won"))
    [opened_row] = await audit_rows(database, opened["id"], "dispute.opened")
    [closed_row] = await audit_rows(database, opened["id"], "dispute.closed")
    assert opened_row["actor_type"] == closed_row["actor_type"] == "webhook"
    assert closed_row["changes"]["outcome"] == [None, "won"]


def test_cli_changes_are_the_operators(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "PAYMENTD_LOG_LEVEL": "WARNING"}

    def paymentd(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "paymentd.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    name = f"cli-{uuid.uuid4().hex[:8]}"
    account_id = paymentd("account", "create", name)
    key = paymentd("apikey", "create", "--account", name, "--scope", "payments:read")
    paymentd("apikey", "revoke", key.split("_")[1])
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT action, actor_type, actor_id FROM audit_entries WHERE account_id = %s "
                            "ORDER BY seq", (account_id,)).fetchall()
    operator = ("operator", getpass.getuser())
    assert rows == [("account.created", *operator), ("api_key.created", *operator), ("api_key.revoked", *operator)]


async def _is(database: Database, payment_id: str, status: str) -> bool:
    return await status_of(database, payment_id) == status

