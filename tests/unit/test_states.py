"""The payment state machine: the allowed moves, and nothing else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymentd.payments import states
from paymentd.payments.states import (
    ALLOWED_MOVES,
    CHARGE_FINAL,
    TERMINAL,
    InvalidTransition,
    PaymentStatus,
    can_move,
    is_final_for_charge,
    is_noop,
    transition,
)

S = PaymentStatus
statuses = st.sampled_from(list(PaymentStatus))


def test_statuses_are_api_md_strings() -> None:
    assert {s.value for s in PaymentStatus} == {
        "requires_payment_method", "requires_confirmation", "requires_action", "processing",
        "requires_capture", "succeeded", "partially_refunded", "refunded", "canceled", "disputed",
    }  # fmt: skip
    assert S.succeeded == "succeeded" and str(S.succeeded) == "succeeded"


def test_every_status_has_an_entry_and_no_self_loops() -> None:
    assert set(ALLOWED_MOVES) == set(PaymentStatus)
    for source, targets in ALLOWED_MOVES.items():
        assert isinstance(targets, frozenset)
        assert source not in targets


def test_allowed_moves_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(TypeError):
        ALLOWED_MOVES[S.canceled] = frozenset({S.succeeded})  # type: ignore[index]


def test_docstring_table_matches_allowed_moves() -> None:
    # The table in the module docstring is the documentation; it must not drift.
    doc = states.__doc__ or ""
    table = {}
    for line in doc.splitlines():
        m = re.fullmatch(r"\s{4}([a-z_]+)\s+->(.*)", line)
        if m and m.group(1) in PaymentStatus.__members__.values():
            table[S(m.group(1))] = frozenset(S(t) for t in m.group(2).split())
    assert table == dict(ALLOWED_MOVES)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.requires_payment_method, S.requires_confirmation),
        (S.requires_confirmation, S.succeeded),
        (S.requires_confirmation, S.requires_action),
        (S.requires_confirmation, S.requires_payment_method),  # declined
        (S.requires_action, S.requires_payment_method),  # 3DS failed
        (S.requires_action, S.succeeded),
        (S.processing, S.requires_action),  # our confirm was in flight
        (S.processing, S.succeeded),
        (S.requires_capture, S.processing),
        (S.requires_capture, S.canceled),
        (S.succeeded, S.refunded),
        (S.partially_refunded, S.refunded),
        (S.refunded, S.disputed),
        (S.disputed, S.partially_refunded),
        (S.refunded, S.partially_refunded),  # a refund failed after Stripe accepted it
        (S.refunded, S.succeeded),  # the only refund failed
    ],
)
def test_allowed_examples(current: PaymentStatus, target: PaymentStatus) -> None:
    assert transition(current, target) is target
    assert can_move(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.succeeded, S.processing),  # late webhook: never backwards
        (S.succeeded, S.requires_payment_method),
        (S.succeeded, S.canceled),
        (S.requires_capture, S.refunded),
        (S.requires_capture, S.requires_payment_method),
        (S.canceled, S.requires_payment_method),
        (S.disputed, S.canceled),
        (S.requires_payment_method, S.refunded),
    ],
)
def test_refused_examples(current: PaymentStatus, target: PaymentStatus) -> None:
    with pytest.raises(InvalidTransition) as info:
        transition(current, target)
    assert (info.value.current, info.value.target) == (current, target)
    assert current in str(info.value) and target in str(info.value)
    assert not can_move(current, target)


def test_strings_from_the_database_are_accepted() -> None:
    assert transition("requires_confirmation", "succeeded") is S.succeeded
    assert can_move("succeeded", "refunded")
    assert is_noop("succeeded", S.succeeded)
    with pytest.raises(ValueError):
        transition("paid", "succeeded")


def test_terminal_and_charge_final() -> None:
    assert TERMINAL == frozenset({S.canceled})
    assert CHARGE_FINAL == {S.succeeded, S.partially_refunded, S.refunded, S.disputed, S.canceled}
    assert is_final_for_charge("refunded") and not is_final_for_charge(S.requires_capture)


def test_invalid_transition_is_not_an_api_error_class() -> None:
    # states.py imports nothing of paymentd; the service maps this to 409.
    from paymentd import errors

    assert not issubclass(InvalidTransition, errors.PaymentdError)


def test_states_imports_nothing_of_paymentd() -> None:
    tree = ast.parse(Path(states.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("paymentd") and node.level == 0
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("paymentd") for a in node.names)


# --- properties ----------------------------------------------------------------------


@given(statuses, statuses)
def test_transition_agrees_with_allowed_moves(current: PaymentStatus, target: PaymentStatus) -> None:
    allowed = target in ALLOWED_MOVES[current]
    assert can_move(current, target) is allowed
    if allowed:
        assert transition(current, target) is target
    else:
        with pytest.raises(InvalidTransition):
            transition(current, target)


@given(statuses)
def test_same_status_is_a_noop_not_a_move(status: PaymentStatus) -> None:
    assert is_noop(status, status)
    assert not can_move(status, status)
    with pytest.raises(InvalidTransition):
        transition(status, status)


@given(statuses)
def test_no_move_out_of_canceled(target: PaymentStatus) -> None:
    assert not can_move(S.canceled, target)


@given(st.lists(statuses, max_size=30))
def test_walks_only_follow_allowed_moves(targets: list[PaymentStatus]) -> None:
    # Apply an arbitrary stream of updates (as unordered webhooks would):
    # the status only ever changes along an allowed move, and canceled sticks.
    status = S.requires_payment_method
    for target in targets:
        before = status
        if is_noop(status, target):
            continue
        try:
            status = transition(status, target)
        except InvalidTransition:
            assert status is before
            continue
        assert status in ALLOWED_MOVES[before]
        assert before is not S.canceled


def _reachable(start: PaymentStatus) -> set[PaymentStatus]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in ALLOWED_MOVES[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_status_reachable_from_requires_payment_method() -> None:
    assert _reachable(S.requires_payment_method) == set(PaymentStatus)


@given(statuses)
def test_charge_final_statuses_never_lead_back_to_the_charge(status: PaymentStatus) -> None:
    # Once money is captured (or the payment canceled), no sequence of moves
    # reaches a pre-capture status again: webhooks can't un-capture a payment.
    if status in CHARGE_FINAL:
        assert _reachable(status) <= CHARGE_FINAL
