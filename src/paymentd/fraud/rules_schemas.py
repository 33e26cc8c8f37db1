"""Request and response bodies of /api/fraud/rules (API.md "Fraud")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from paymentd.fraud import rules
from paymentd.schemas import RequestModel


class RuleIn(RequestModel):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    condition: Annotated[str, Field(min_length=1, max_length=rules.MAX_CONDITION)]
    action: Literal["block", "review", "allow"]


class RuleSetIn(RequestModel):
    # The version this PUT replaces: when given and no longer current, 409 (a lost update).
    version: Annotated[int, Field(ge=0)] | None = None
    rules: Annotated[list[RuleIn], Field(max_length=rules.MAX_RULES)]
    # Named lists of strings (emails, domains, IPs, fingerprints, BINs, countries) that
    # conditions read as `list_<name>`: block lists and allow lists without long conditions.
    lists: dict[str, list[str]] = {}


class RuleOut(BaseModel):
    id: str
    condition: str
    action: str
    stage: str  # the first stage whose inputs the condition reads: create, confirm or post_auth


class RuleSetOut(BaseModel):
    version: int
    rules: list[RuleOut]
    lists: dict[str, list[str]]
    defaults: bool  # version 0: the rules an account has before it saves any


def present(rule_set: rules.RuleSet) -> RuleSetOut:
    return RuleSetOut(
        version=rule_set.version,
        rules=[RuleOut(id=r.id, condition=r.condition, action=r.action, stage=r.stage) for r in rule_set.rules],
        lists={name: list(items) for name, items in rule_set.lists.items()},
        defaults=rule_set.version == 0,
    )
