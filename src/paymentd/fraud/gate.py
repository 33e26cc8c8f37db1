"""Running a stage's rules on a payment: its inputs gathered, counters counted, the
verdict reached and stored. The payment service calls it; it never moves a payment.

Confirm runs in two steps so that a block needing no card facts costs Stripe nothing:
`confirm_start` (inside the transaction that opens the attempt) counts the user, email
and IP, and evaluates rules in order up to the first one that reads the card; only
then `confirm_finish` asks the processor for the card's facts (cached per payment
method id), counts the card and evaluates the rest.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from paymentd import audit, crypto
from paymentd.crypto.fields import of_table
from paymentd.fraud import geo, inputs, rules, store, velocity
from paymentd.logs import log
from paymentd.money import Money
from paymentd.payments.models import Payment
from paymentd.providers import base as provider_types
from paymentd.providers.base import CardFacts, PaymentProvider

_USER_EMAIL = next(f for f in of_table("users") if f.column == "email")
_PAYER_NAMES = frozenset({"email", "email_domain"})
# A payment method's card never changes: its facts are cached per id, in each process.
_CARD_CACHE = 4096


@dataclass(frozen=True)
class Device:
    """The payer's device, as the caller reports it at confirm."""

    ip_address: str = ""
    user_agent: str = ""


@dataclass
class Pending:
    """A confirm decision under way: what step two needs to finish it."""

    rule_set: rules.RuleSet
    rules: list[rules.Rule]
    values: dict[str, Any]
    keys: dict[str, str]
    verdict: rules.Verdict
    now: datetime

    @property
    def needs_card(self) -> bool:
        return self.verdict.paused_at is not None


class FraudGate:
    def __init__(self, provider: PaymentProvider, *, enabled: bool = True,
                 countries: geo.CountryTable = geo.EMPTY) -> None:
        self.provider = provider
        self.enabled = enabled
        self.countries = countries
        self._cards: OrderedDict[str, CardFacts] = OrderedDict()
        store.defaults_set()  # parsed now, not on a first payment's clock

    # ------------------------------------------------------------------ create

    async def at_create(self, conn: asyncpg.Connection, payment: Payment) -> store.Decision | None:
        """The create stage's decision (to store with the payment), or None when no rule runs at create."""
        if not self.enabled:
            return None
        rule_set = await store.current(conn, payment.account_id)
        stage_rules = rule_set.at(inputs.CREATE)
        if not stage_rules:
            return None
        values = {**inputs.blank(inputs.CREATE), **rule_set.list_values()}
        await self._payment_inputs(conn, payment, stage_rules, values)
        verdict = rules.evaluate(stage_rules, values)
        return _decision(payment, inputs.CREATE, rule_set, verdict, values)

    # ------------------------------------------------------------------ confirm

    async def confirm_start(self, conn: asyncpg.Connection, payment: Payment, attempt: int,
                            device: Device) -> Pending | None:
        """Step one, in the transaction that opened the attempt (payment locked)."""
        if not self.enabled:
            return None
        rule_set = await store.current(conn, payment.account_id)
        stage_rules = rule_set.at(inputs.CONFIRM)
        if not stage_rules:
            return None
        now = datetime.now(UTC)
        values = {**inputs.blank(inputs.CONFIRM), **rule_set.list_values()}
        email_index = await self._payment_inputs(conn, payment, stage_rules, values)
        values["attempt_number"] = Decimal(attempt)
        values["ip_address"], values["user_agent"] = device.ip_address, device.user_agent
        values["ip_country"] = self.countries.country(device.ip_address) if device.ip_address else ""
        ring = crypto.keyring()
        keys = {"user": str(payment.user_id)}
        if email_index:
            keys["email"] = email_index
        if device.ip_address:
            keys["ip"] = ring.blind_index(device.ip_address, purpose="fraud.ip")
        values.update(await velocity.count_attempt(conn, payment.account_id, keys, currency=payment.currency,
                                                   amount=payment.amount, now=now))
        _amounts_in_major_units(values, payment.currency)
        verdict = rules.evaluate(stage_rules, values, card_known=False)
        return Pending(rule_set, stage_rules, values, keys, verdict, now)

    async def card(self, payment_method: str) -> CardFacts:
        """The card's facts (one processor read per new payment method); unknown ones
        when the processor cannot say: the rules then see "" and the confirm goes on."""
        if (known := self._cards.get(payment_method)) is not None:
            self._cards.move_to_end(payment_method)
            return known
        try:
            facts = await self.provider.card_facts(payment_method)
        except provider_types.ProviderError as error:
            log.warning("fraud.card_facts_unavailable", error=type(error).__name__, code=error.code)
            return CardFacts(type="")
        self._cards[payment_method] = facts
        if len(self._cards) > _CARD_CACHE:
            self._cards.popitem(last=False)
        return facts

    async def confirm_finish(self, conn: asyncpg.Connection, payment: Payment, pending: Pending,
                             facts: CardFacts) -> None:
        """Step two: the card counted and the remaining rules evaluated (payment locked)."""
        values = pending.values
        values.update(payment_method_type=facts.type, card_fingerprint=facts.fingerprint,
                      card_country=facts.country, card_bin=facts.bin, card_brand=facts.brand,
                      card_funding=facts.funding)
        if facts.fingerprint:
            card_key = {"card": crypto.keyring().blind_index(facts.fingerprint, purpose="fraud.card")}
            counted = await velocity.count_attempt(conn, payment.account_id, card_key, currency=payment.currency,
                                                   amount=payment.amount, now=pending.now)
            _amounts_in_major_units(counted, payment.currency)
            values.update(counted)
            pending.keys.update(card_key)
        rules.evaluate(pending.rules, values, pending.verdict, start=pending.verdict.paused_at or 0)

    def confirm_decision(self, payment: Payment, attempt: int, pending: Pending) -> store.Decision:
        return _decision(payment, inputs.CONFIRM, pending.rule_set, pending.verdict, pending.values,
                         attempt=attempt, keys=pending.keys)

    # ------------------------------------------------------------------ after the attempt

    async def count_outcome(self, conn: asyncpg.Connection, payment: Payment, *, declined: bool) -> None:
        """The attempt's decline or success, counted once against the keys its decision counted."""
        if not self.enabled:
            return
        decision = await store.settle(conn, payment.id, "declined" if declined else "succeeded")
        if decision is not None:
            await velocity.count_outcome(conn, decision.account_id, decision.keys, currency=payment.currency,
                                         declined=declined, now=datetime.now(UTC))

    async def after_authorization(self, conn: asyncpg.Connection, payment: Payment, *,
                                  risk_level: str, risk_score: int | None) -> store.Decision | None:
        """The post-auth stage, once Radar's verdict on an authorization is known."""
        if not self.enabled:
            return None
        rule_set = await store.current(conn, payment.account_id)
        stage_rules = rule_set.at(inputs.POST_AUTH)
        if not stage_rules:
            return None
        values = {**inputs.blank(inputs.POST_AUTH), **rule_set.list_values()}
        await self._payment_inputs(conn, payment, stage_rules, values)
        values["radar_risk_level"] = risk_level or ""
        values["radar_risk_score"] = Decimal(risk_score if risk_score is not None else -1)
        verdict = rules.evaluate(stage_rules, values)
        return _decision(payment, inputs.POST_AUTH, rule_set, verdict, values)

    # ------------------------------------------------------------------ inputs

    async def _payment_inputs(self, conn: asyncpg.Connection, payment: Payment, stage_rules: list[rules.Rule],
                              values: dict[str, Any]) -> str | None:
        """The payment's and payer's inputs; the user's email is opened only when a rule
        reads it. Returns the email's blind index (the email counters' key)."""
        money = Money.from_minor(payment.amount, payment.currency)
        values.update(amount=money.to_decimal(), amount_minor=Decimal(payment.amount), currency=payment.currency,
                      user_id=str(payment.user_id), capture_method=payment.capture_method)
        names = frozenset().union(*(rule.names for rule in stage_rules))
        row = await conn.fetchrow("SELECT email, email_index FROM users WHERE id = $1", payment.user_id)
        if names & _PAYER_NAMES and row is not None and row["email"] is not None:
            email = (_USER_EMAIL.open(crypto.keyring(), row["email"], str(payment.user_id)) or "").strip().lower()
            values["email"], values["email_domain"] = email, email.rpartition("@")[2]
        if "is_first_payment" in names:
            values["is_first_payment"] = not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM payments WHERE account_id = $1 AND user_id = $2 AND id <> $3"
                " AND amount_received > 0)", payment.account_id, payment.user_id, payment.id)
        return row["email_index"] if row is not None else None


def _amounts_in_major_units(values: dict[str, Any], currency: str) -> None:
    for name, value in values.items():
        if "_amount_" in name:
            values[name] = Money.from_minor(int(value), currency).to_decimal()


def _decision(payment: Payment, stage: str, rule_set: rules.RuleSet, verdict: rules.Verdict,
              values: dict[str, Any], *, attempt: int | None = None,
              keys: dict[str, str] | None = None) -> store.Decision:
    return store.Decision(payment.account_id, payment.id, stage, rule_set.version, verdict.action,
                          list(verdict.fired), values, attempt=attempt, keys=dict(keys or {}),
                          errors=dict(verdict.errors))


def actor_of(api_key_id: uuid.UUID | None) -> audit.Actor:
    return audit.Actor("api_key", str(api_key_id) if api_key_id else None)
