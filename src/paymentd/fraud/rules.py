"""A merchant's rule set: parsed, type-checked and compiled once, evaluated per payment.

Conditions are rule-engine expressions (a maintained, typed expression language:
no parser of our own) over the names in inputs.py and the set's named lists.
Everything that can be wrong with a rule is found when it is saved (RuleSetInvalid,
a 400); evaluation only meets arithmetic errors (a division by zero), which leave
that one rule unfired and are written into the decision.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import rule_engine
from rule_engine import DataType, ast

from paymentd.fraud import inputs

# Importing rule-engine builds its parser's tables (seconds of CPU, many objects), which
# makes a full garbage collection due: measured, it fell on a process's first payment
# (0.5-1 s, past the response budget). Collected here, at import, instead.
gc.collect()

ACTIONS = ("block", "review", "allow")
RULE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
LIST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_RULES, MAX_CONDITION, MAX_LISTS, MAX_LIST_ITEMS, MAX_ITEM = 200, 2000, 50, 10_000, 200
# Regular expressions are refused: a pathological one would stall every payment of the account.
_REFUSED_NODES = (ast.FuzzyComparisonExpression,)


class RuleSetInvalid(ValueError):
    """A rule set that cannot be saved; `param` points at the offending part."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message, self.param = message, param


@dataclass(frozen=True)
class Rule:
    id: str
    condition: str
    action: str
    stage: str  # the first stage that knows every name it reads
    names: frozenset[str]
    compiled: rule_engine.Rule = field(repr=False, compare=False)

    def runs_at(self, stage: str) -> bool:
        """Create rules run again at confirm (with what confirm knows); post-auth rules only after authorization."""
        if stage == inputs.POST_AUTH or self.stage == inputs.POST_AUTH:
            return stage == self.stage
        return inputs.STAGES.index(self.stage) <= inputs.STAGES.index(stage)

    @property
    def needs_card(self) -> bool:
        return bool(self.names & inputs.CARD_INPUTS)


@dataclass(frozen=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]
    lists: Mapping[str, tuple[str, ...]]

    def at(self, stage: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.runs_at(stage)]

    def list_values(self) -> dict[str, set[str]]:
        return {inputs.LIST_PREFIX + name: set(items) for name, items in self.lists.items()}

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version,
                "rules": [{"id": r.id, "condition": r.condition, "action": r.action} for r in self.rules],
                "lists": {name: list(items) for name, items in self.lists.items()}}


@dataclass
class Verdict:
    """What a stage's rules decided: `block` / `review` / `allow` (an allow rule stopped
    evaluation) / `none`; the rules that fired, in order; rules that failed to evaluate."""

    action: str = "none"
    fired: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    # The rule evaluation stopped at to fetch what it needs (card inputs), if any.
    paused_at: int | None = None
    stopped: bool = False  # a block or allow rule ended evaluation


def parse(body: Mapping[str, Any], version: int) -> RuleSet:
    """A rule set from its JSON form ({"rules": [...], "lists": {...}}), or RuleSetInvalid."""
    lists = _lists(body.get("lists") or {})
    raw = body.get("rules")
    if not isinstance(raw, list):
        raise RuleSetInvalid("`rules` must be a list of rules.", "rules")
    if len(raw) > MAX_RULES:
        raise RuleSetInvalid(f"At most {MAX_RULES} rules.", "rules")
    types = {**inputs.TYPES, **{inputs.LIST_PREFIX + name: DataType.SET(DataType.STRING) for name in lists}}
    rules: list[Rule] = []
    for index, item in enumerate(raw):
        rule = _rule(item, f"rules[{index}]", types)
        if any(r.id == rule.id for r in rules):
            raise RuleSetInvalid(f"Two rules have the id `{rule.id}`.", f"rules[{index}].id")
        rules.append(rule)
    return RuleSet(version, tuple(rules), lists)


def _lists(raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, Mapping) or len(raw) > MAX_LISTS:
        raise RuleSetInvalid(f"`lists` must be an object of at most {MAX_LISTS} named lists.", "lists")
    lists: dict[str, tuple[str, ...]] = {}
    for name, items in raw.items():
        if not isinstance(name, str) or not LIST_NAME.match(name):
            raise RuleSetInvalid("A list name is lower case letters, digits and _ (up to 40).", "lists")
        if not isinstance(items, list) or len(items) > MAX_LIST_ITEMS or not all(
                isinstance(i, str) and len(i) <= MAX_ITEM for i in items):
            raise RuleSetInvalid(f"List `{name}` must hold at most {MAX_LIST_ITEMS} strings of up to "
                                 f"{MAX_ITEM} characters.", f"lists.{name}")
        # Compared as the inputs are: emails, domains and countries in lower/upper case as inputs.py keeps them.
        lists[name] = tuple(dict.fromkeys(i.strip() for i in items))
    return lists


def _rule(item: Any, param: str, types: Mapping[str, Any]) -> Rule:
    if not isinstance(item, Mapping) or set(item) - {"id", "condition", "action"}:
        raise RuleSetInvalid("A rule is an object with `id`, `condition` and `action`.", param)
    rule_id, condition, action = item.get("id"), item.get("condition"), item.get("action")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise RuleSetInvalid("A rule id is 1-64 letters, digits, _ . : -", f"{param}.id")
    if action not in ACTIONS:
        raise RuleSetInvalid(f"`action` is one of {', '.join(ACTIONS)}.", f"{param}.action")
    if not isinstance(condition, str) or not condition.strip() or len(condition) > MAX_CONDITION:
        raise RuleSetInvalid(f"`condition` is an expression of 1-{MAX_CONDITION} characters.", f"{param}.condition")
    names: set[str] = set()

    def resolve(name: str) -> Any:
        if name not in types:
            raise rule_engine.SymbolResolutionError(name)
        names.add(name)
        return types[name]

    try:
        compiled = rule_engine.Rule(condition, context=rule_engine.Context(type_resolver=resolve))
    except rule_engine.SymbolResolutionError as error:
        raise RuleSetInvalid(f"Rule `{rule_id}`: unknown name `{error.symbol_name}`.", f"{param}.condition") from None
    except rule_engine.RuleSyntaxError as error:
        raise RuleSetInvalid(f"Rule `{rule_id}`: syntax error ({error.message}).", f"{param}.condition") from None
    except rule_engine.EngineError as error:
        # Type mismatches (`amount > "x"`), bad attributes, bad literals: all found here.
        raise RuleSetInvalid(f"Rule `{rule_id}`: {error.message}.", f"{param}.condition") from None
    except Exception:  # noqa: BLE001 - whatever else the parser trips on (nesting too deep...) is still a 400
        raise RuleSetInvalid(f"Rule `{rule_id}`: the condition cannot be read.", f"{param}.condition") from None
    expression = compiled.statement.expression
    if expression.result_type not in (DataType.BOOLEAN, DataType.UNDEFINED) or any(
            isinstance(node, _REFUSED_NODES) for node in _nodes(expression)):
        reason = "regular expressions are not allowed" if expression.result_type in (
            DataType.BOOLEAN, DataType.UNDEFINED) else "the condition must be true or false"
        raise RuleSetInvalid(f"Rule `{rule_id}`: {reason}.", f"{param}.condition")
    stage = max((inputs.FIRST_STAGE.get(n, inputs.CREATE) for n in names), key=inputs.STAGES.index,
                default=inputs.CREATE)
    return Rule(rule_id, condition, action, stage, frozenset(names), compiled)


def _nodes(node: Any) -> list[Any]:
    found = [node]
    for value in vars(node).values():
        children = value if isinstance(value, list | tuple) else [value]
        found += [n for child in children if isinstance(child, ast.ExpressionBase) for n in _nodes(child)]
    return found


def evaluate(rules: Sequence[Rule], values: Mapping[str, Any], verdict: Verdict | None = None,
             *, start: int = 0, card_known: bool = True) -> Verdict:
    """Rules in order from `start`: `allow` and `block` stop evaluation, `review` goes on
    (a later block still blocks). Without card inputs, evaluation pauses before the first
    rule that needs them (`paused_at`), so the caller fetches the card only when needed."""
    verdict = verdict or Verdict()
    verdict.paused_at = None
    for index in range(start, len(rules)):
        rule = rules[index]
        if rule.needs_card and not card_known:
            verdict.paused_at = index
            return verdict
        try:
            hit = bool(rule.compiled.evaluate(values))
        except Exception as error:  # noqa: BLE001 - a rule's arithmetic never fails the payment
            verdict.errors[rule.id] = getattr(error, "message", None) or type(error).__name__
            continue
        if not hit:
            continue
        verdict.fired.append(rule.id)
        if rule.action == "review":
            verdict.action = "review" if verdict.action == "none" else verdict.action
            continue
        verdict.action = rule.action if rule.action == "block" or verdict.action == "none" else verdict.action
        verdict.stopped = True
        return verdict
    return verdict
