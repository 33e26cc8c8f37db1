"""Fraud rules without I/O: what a rule set accepts at save time, the stage each rule
runs at, the order of evaluation, and the offline IP -> country table."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from paymentd.fraud import defaults, geo, inputs, rules


def rule_set(*items: tuple[str, str, str], lists: dict | None = None) -> rules.RuleSet:
    return rules.parse({"rules": [{"id": i, "condition": c, "action": a} for i, c, a in items],
                        "lists": lists or {}}, 1)


def values(stage: str = inputs.CONFIRM, **given) -> dict:  # type: ignore[no-untyped-def]
    return {**inputs.blank(stage), **given}


def test_each_rule_runs_from_the_first_stage_that_knows_its_names() -> None:
    parsed = rule_set(("a", "amount > 10", "block"), ("b", "ip_country != card_country", "review"),
                      ("c", 'radar_risk_level == "elevated"', "review"))
    assert [r.stage for r in parsed.rules] == ["create", "confirm", "post_auth"]
    assert [r.id for r in parsed.at("create")] == ["a"]
    assert [r.id for r in parsed.at("confirm")] == ["a", "b"]
    assert [r.id for r in parsed.at("post_auth")] == ["c"]
    assert [r.needs_card for r in parsed.rules] == [False, True, False]


def test_block_stops_review_goes_on_allow_stops() -> None:
    parsed = rule_set(("r1", "amount > 1", "review"), ("ok", "amount < 3", "allow"), ("no", "true", "block"))
    small = rules.evaluate(parsed.rules, values(amount=Decimal("2")))
    assert (small.action, small.fired, small.stopped) == ("review", ["r1", "ok"], True)  # the earlier review stands
    big = rules.evaluate(parsed.rules, values(amount=Decimal("5")))
    assert (big.action, big.fired) == ("block", ["r1", "no"])
    tiny = rules.evaluate(parsed.rules, values(amount=Decimal("0.5")))
    assert (tiny.action, tiny.fired) == ("allow", ["ok"])


def test_evaluation_pauses_before_the_first_rule_that_reads_the_card() -> None:
    parsed = rule_set(("ip", 'ip_address == "1.2.3.4"', "block"), ("card", 'card_country == "US"', "block"),
                      ("late", "true", "review"))
    first = rules.evaluate(parsed.rules, values(ip_address="5.6.7.8"), card_known=False)
    assert (first.paused_at, first.action) == (1, "none")
    rules.evaluate(parsed.rules, values(card_country="US"), first, start=first.paused_at)
    assert (first.action, first.fired) == ("block", ["card"])
    assert rules.evaluate(parsed.rules, values(ip_address="1.2.3.4"), card_known=False).fired == ["ip"]


def test_bin_and_country_lists() -> None:
    parsed = rule_set(("bins", "card_bin in list_bins", "block"),
                      ("countries", "ip_country in list_countries and ip_country != card_country", "review"),
                      lists={"bins": ["424242", "400000"], "countries": ["XX"]})
    lists = parsed.list_values()
    assert rules.evaluate(parsed.rules, values(card_bin="400000", **lists)).fired == ["bins"]
    hit = rules.evaluate(parsed.rules, values(card_bin="555555", ip_country="XX", card_country="US", **lists))
    assert (hit.action, hit.fired) == ("review", ["countries"])


def test_a_failing_rule_at_payment_time_is_recorded_not_raised() -> None:
    parsed = rule_set(("div", "amount / user_attempts_10m > 1", "block"), ("next", "true", "review"))
    verdict = rules.evaluate(parsed.rules, values(amount=Decimal("5")))  # no attempts: division by zero
    assert (verdict.action, verdict.fired) == ("review", ["next"])
    assert "div" in verdict.errors


@pytest.mark.parametrize(("condition", "says"), [
    ("amount >", "syntax error"), ("nope == 1", "unknown name `nope`"), ('amount > "x"', "Rule `r`"),
    ("currency", "true or false"), ('email =~ "x"', "regular expressions"), ("", "expression of"),
    ("email.nope", "Rule `r`"),
])
def test_invalid_conditions_are_refused_when_saved(condition: str, says: str) -> None:
    with pytest.raises(rules.RuleSetInvalid) as refused:
        rule_set(("r", condition, "block"))
    assert says in refused.value.message and refused.value.param == "rules[0].condition"


def test_shape_limits() -> None:
    with pytest.raises(rules.RuleSetInvalid, match="At most"):
        rule_set(*[(f"r{i}", "true", "allow") for i in range(rules.MAX_RULES + 1)])
    with pytest.raises(rules.RuleSetInvalid, match="List `big`"):
        rule_set(lists={"big": ["x"] * (rules.MAX_LIST_ITEMS + 1)})
    with pytest.raises(rules.RuleSetInvalid, match="action"):
        rules.parse({"rules": [{"id": "r", "condition": "true", "action": "maybe"}]}, 1)


def test_the_defaults_block_card_testing_and_radar_highest() -> None:
    parsed = rules.parse(defaults.body(), 0)
    by_ip = rules.evaluate(parsed.at("confirm"), values(ip_address="192.0.2.1", ip_declines_10m=Decimal(10)),
                           card_known=False)
    assert (by_ip.action, by_ip.fired) == ("block", ["default_card_testing_ip"])
    no_ip = rules.evaluate(parsed.at("confirm"), values(ip_declines_10m=Decimal(10)), card_known=False)
    assert no_ip.action == "none" and no_ip.paused_at is not None  # the card rule waits for the card
    card = rules.evaluate(parsed.at("confirm"), values(card_fingerprint="f", card_declines_10m=Decimal(10)))
    assert card.fired == ["default_card_testing_card"]
    radar = rules.evaluate(parsed.at("post_auth"), values(inputs.POST_AUTH, radar_risk_level="highest"))
    assert (radar.action, radar.fired) == ("block", ["default_radar_highest"])
    normal = rules.evaluate(parsed.at("post_auth"), values(inputs.POST_AUTH, radar_risk_level="normal"))
    assert normal.action == "none"


def test_every_input_has_a_non_null_blank_value() -> None:
    for stage in inputs.STAGES:
        assert all(value is not None for value in inputs.blank(stage).values())
    assert "card_fingerprint" not in inputs.blank(inputs.CREATE)
    assert inputs.blank(inputs.POST_AUTH)["radar_risk_score"] == Decimal(-1)


def test_ip_country_table(tmp_path: Path) -> None:
    table = tmp_path / "ip.csv"
    table.write_text("# network,country\n203.0.113.0/24,au\n198.51.100.0,198.51.100.127,DE\n2001:db8::/32,NL\n")
    countries = geo.load(table)
    assert countries.country("203.0.113.77") == "AU"
    assert countries.country("198.51.100.127") == "DE" and countries.country("198.51.100.128") == ""
    assert countries.country("2001:db8::1") == "NL" and countries.country("::ffff:203.0.113.1") == "AU"
    assert countries.country("not an ip") == "" and geo.EMPTY.country("203.0.113.1") == ""
    table.write_text("203.0.113.0/24,Australia\n")
    with pytest.raises(ValueError, match="ip.csv:1"):
        geo.load(table)
