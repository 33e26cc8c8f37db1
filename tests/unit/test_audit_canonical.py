"""The audit trail's one serialization: the standalone export checker carries a copy
of it, and both must hash every body alike; times keep microseconds, nothing finer."""

from __future__ import annotations

import getpass
import importlib.util
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from paymentd.audit import canonical, personal

_spec = importlib.util.spec_from_file_location(
    "verify_audit_export", Path(__file__).resolve().parents[2] / "scripts" / "verify_audit_export.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)  # type: ignore[union-attr]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=8))
def test_the_export_checker_hashes_exactly_as_paymentd(body: dict) -> None:
    assert script.canonical(body) == canonical.canonical(body)
    assert script.entry_hash(body) == canonical.entry_hash(body)


def test_checkpoint_messages_agree() -> None:
    assert script.checkpoint_message(3, 7, "ab" * 32, "2026-01-01T00:00:00.000000Z") == \
        canonical.checkpoint_message(3, 7, "ab" * 32, "2026-01-01T00:00:00.000000Z")


def test_timestamps_are_utc_microseconds_always_six_digits() -> None:
    moment = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert canonical.timestamp(moment) == "2026-05-01T10:00:00.000000Z"
    assert canonical.timestamp(moment.replace(microsecond=123456)) == "2026-05-01T10:00:00.123456Z"


def test_plain_values_are_json_native_and_stable() -> None:
    ident = uuid.uuid4()
    assert canonical.plain({"id": ident, "amount": Decimal("1.50"), "at": datetime(2026, 1, 1, tzinfo=UTC),
                            "tags": ("a", "b")}) == {"id": str(ident), "amount": "1.50",
                                                     "at": "2026-01-01T00:00:00.000000Z", "tags": ["a", "b"]}


def test_personal_values_leave_the_clear_part_and_their_commitment_checks(database_url: str) -> None:
    # database_url installs the keyring the seal needs (without it the test passed only
    # when another test in the same process had installed one first).
    clear, private = personal.split({"status": [None, "x"], "email": [None, "ann@example.com"]})
    assert clear == {"status": [None, "x"]} and private == {"email": [None, "ann@example.com"]}
    blob, commitment = personal.commit(private)
    key = uuid.uuid4()
    opened = personal.unseal(key, personal.seal(key, blob))
    assert personal.commitment(opened["salt"], opened["values"]) == commitment
    assert personal.commitment(opened["salt"], {"email": [None, "eve@example.com"]}) != commitment


def test_one_off_commands_act_as_the_operator_and_services_as_the_system() -> None:
    """`serve` and `worker` run background work (receipt emails, checkpoints, re-encryption)
    that no operator asked for: it must not be recorded under whoever started the process."""
    import contextvars

    from typer.testing import CliRunner

    from paymentd.audit import context as audit_context
    from paymentd.cli import app

    def actor_after(*args: str) -> audit_context.Actor | None:
        isolated = contextvars.copy_context()  # the callback's setting stays out of other tests
        result = isolated.run(CliRunner().invoke, app, list(args))
        assert result.exit_code == 0, result.output
        return isolated.run(audit_context.current).actor

    assert actor_after("audit", "new-key") == audit_context.Actor("operator", getpass.getuser())
    assert actor_after("serve", "--help") is None
    assert actor_after("worker", "--help") is None
