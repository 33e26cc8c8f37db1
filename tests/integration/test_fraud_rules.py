"""paymentd's own fraud rules through the HTTP API, against the simulator: the rule set
API (versions, 400s, 409s), block lists, allow rules, reviews, card-testing defaults,
decisions that name their version, and what reaches Stripe (nothing, when blocked)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from paymentd.db import Database
from paymentd.fraud import store
from tests.conftest import Merchant, sim_requests


async def put_rules(merchant: Merchant, rules: list[dict], lists: dict | None = None, **extra) -> httpx.Response:  # type: ignore[no-untyped-def]
    return await merchant.client.put("/api/fraud/rules", json={"rules": rules, "lists": lists or {}, **extra})


async def new_user(merchant: Merchant, email: str = "ann@example.com") -> str:
    response = await merchant.client.post("/api/users", json={"email": email, "name": "Ann"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def create(merchant: Merchant, user_id: str, amount: str = "19.99", **fields) -> httpx.Response:  # type: ignore[no-untyped-def]
    return await merchant.client.post("/api/payments/create", json={"user_id": user_id, "amount": amount, **fields},
                                      headers={"Prefer": "wait=10"})


async def pay(merchant: Merchant, user_id: str, method: str = "pm_card_visa", amount: str = "19.99",
              **confirm) -> tuple[str, httpx.Response]:  # type: ignore[no-untyped-def]
    created = await create(merchant, user_id, amount)
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    response = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": payment_id, "payment_method": method, **confirm},
        headers={"Prefer": "wait=10"})
    return payment_id, response


async def decisions(database: Database, payment_id: str) -> list[dict]:
    async with database.sql_connection() as conn:
        return list(await store.of_payment(conn, uuid.UUID(payment_id)))


def blocked(response: httpx.Response, rule: str, payment_id: str | None = None) -> None:
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["rule"]) == ("fraud_error", "payment_blocked", rule)
    assert rule in error["message"]
    if payment_id is not None:
        assert error["payment_id"] == payment_id


# ---------------------------------------------------------------- the rule set API


async def test_defaults_then_versions_with_audit(merchant: Merchant) -> None:
    got = (await merchant.client.get("/api/fraud/rules")).json()
    assert got["version"] == 0 and got["defaults"] is True
    assert [r["id"] for r in got["rules"]] == ["default_card_testing_ip", "default_card_testing_user",
                                               "default_card_testing_card", "default_radar_highest"]
    assert {r["id"]: r["stage"] for r in got["rules"]}["default_radar_highest"] == "post_auth"

    saved = await put_rules(merchant, [{"id": "big", "condition": "amount > 1000", "action": "review"}], version=0)
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 1 and saved.json()["rules"][0]["stage"] == "create"
    again = await put_rules(merchant, [], version=1)
    assert again.json() == {"version": 2, "rules": [], "lists": {}, "defaults": False}

    audit = (await merchant.client.get("/api/audit", params={"action": "fraud_rules.updated"})).json()["data"]
    assert sorted(tuple(e["changes"]["version"]) for e in audit) == [(0, 1), (1, 2)]


async def test_a_lost_update_is_a_409(merchant: Merchant) -> None:
    assert (await put_rules(merchant, [], version=0)).status_code == 200
    stale = await put_rules(merchant, [{"id": "x", "condition": "true", "action": "allow"}], version=0)
    assert stale.status_code == 409, stale.text
    assert stale.json()["error"]["code"] == "rule_set_version_mismatch"
    assert (await merchant.client.get("/api/fraud/rules")).json()["version"] == 1


@pytest.mark.parametrize(("rule", "param", "says"), [
    ({"id": "r", "condition": "amount >", "action": "block"}, "rules[0].condition", "syntax error"),
    ({"id": "r", "condition": "amout > 5", "action": "block"}, "rules[0].condition", "unknown name `amout`"),
    ({"id": "r", "condition": 'amount > "5"', "action": "block"}, "rules[0].condition", "Rule `r`"),
    ({"id": "r", "condition": "amount", "action": "block"}, "rules[0].condition", "true or false"),
    ({"id": "r", "condition": 'email =~ "(a+)+$"', "action": "block"}, "rules[0].condition", "regular expressions"),
    ({"id": "r", "condition": "card_country in list_nope", "action": "block"}, "rules[0].condition", "list_nope"),
    ({"id": "bad id!", "condition": "true", "action": "block"}, "rules[0].id", "rule id"),
])
async def test_an_invalid_rule_is_a_400_and_nothing_is_saved(merchant: Merchant, rule: dict, param: str,
                                                             says: str) -> None:
    response = await put_rules(merchant, [rule])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_rule", param)
    assert says in error["message"]
    assert (await merchant.client.get("/api/fraud/rules")).json()["version"] == 0


async def test_bad_shapes_are_400s(merchant: Merchant) -> None:
    twice = [{"id": "r", "condition": "true", "action": "allow"}] * 2
    assert (await put_rules(merchant, twice)).json()["error"]["param"] == "rules[1].id"
    assert (await put_rules(merchant, [{"id": "r", "condition": "true", "action": "maybe"}])).status_code == 400
    assert (await put_rules(merchant, [], {"Bad Name": []})).json()["error"]["param"] == "lists"
    assert (await merchant.client.put("/api/fraud/rules", json={"rules": "x"})).status_code == 400


async def test_rules_need_the_admin_scope(paymentd, database: Database) -> None:  # type: ignore[no-untyped-def]
    from paymentd.auth.keys import Scope
    from tests.conftest import make_key

    _, key = await make_key(database, f"m-{uuid.uuid4().hex[:8]}", [Scope.payments_write, Scope.payments_read])
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert (await client.get("/api/fraud/rules")).status_code == 403
        assert (await client.put("/api/fraud/rules", json={"rules": []})).status_code == 403


# ---------------------------------------------------------------- decisions


async def test_block_lists_of_emails_domains_ips_fingerprints_and_countries(merchant: Merchant, sim,
                                                                            database: Database) -> None:  # type: ignore[no-untyped-def]
    lists = {"emails": ["mallory@example.com"], "domains": ["evil.test"], "ips": ["203.0.113.9"],
             "countries": ["US"], "fingerprints": []}
    rules = [
        {"id": "blocked_email", "condition": "email in list_emails", "action": "block"},
        {"id": "blocked_domain", "condition": "email_domain in list_domains", "action": "block"},
        {"id": "blocked_ip", "condition": "ip_address in list_ips", "action": "block"},
        {"id": "blocked_fingerprint", "condition": "card_fingerprint in list_fingerprints", "action": "block"},
        {"id": "blocked_country", "condition": "card_country in list_countries", "action": "block"},
    ]
    assert (await put_rules(merchant, rules, lists)).status_code == 200

    # Emails and domains are known at create: the payment is canceled before Stripe hears of it.
    for email, rule in (("Mallory@Example.com", "blocked_email"), ("eve@evil.test", "blocked_domain")):
        response = await create(merchant, await new_user(merchant, email))
        blocked(response, rule)
        payment_id = response.json()["error"]["payment_id"]
        payment = (await merchant.client.get(f"/api/payments/{payment_id}")).json()
        assert payment["status"] == "canceled" and payment["stripe_payment_intent_id"] is None
        assert payment["last_payment_error"]["rule"] == rule
        assert not [r for r in sim_requests(sim) if payment_id in (r.get("idempotency_key") or "")]

    # The payer's IP at confirm.
    user = await new_user(merchant)
    payment_id, response = await pay(merchant, user, ip_address="203.0.113.9", user_agent="Mozilla/5.0")
    blocked(response, "blocked_ip", payment_id)
    assert not sim_requests(sim, idempotency_key=f"paymentd:{payment_id}:confirm:1")

    # The card's country (the simulator's test cards are US cards), then its fingerprint.
    payment_id, response = await pay(merchant, user)
    blocked(response, "blocked_country", payment_id)
    fingerprint = (await decisions(database, payment_id))[-1]["inputs"]["card_fingerprint"]
    assert fingerprint
    lists.update(countries=[], fingerprints=[fingerprint])
    assert (await put_rules(merchant, rules, lists)).status_code == 200
    payment_id, response = await pay(merchant, user)
    blocked(response, "blocked_fingerprint", payment_id)

    audit = (await merchant.client.get("/api/audit", params={"action": "fraud.blocked", "object_id": payment_id}))
    [entry] = audit.json()["data"]
    assert entry["changes"]["rules"] == [None, ["blocked_fingerprint"]]


async def test_an_allow_rule_stops_evaluation(merchant: Merchant) -> None:
    rules = [{"id": "small_is_fine", "condition": "amount < 5", "action": "allow"},
             {"id": "no_usd", "condition": 'currency == "usd"', "action": "block"}]
    assert (await put_rules(merchant, rules)).status_code == 200
    user = await new_user(merchant)
    _, response = await pay(merchant, user, amount="4.99")
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    blocked(await create(merchant, user, "5.00"), "no_usd")


async def test_the_sixth_attempt_from_one_card_in_ten_minutes_goes_to_review(merchant: Merchant,
                                                                             database: Database) -> None:
    rule = {"id": "card_velocity", "condition": "card_attempts_10m > 5", "action": "review"}
    assert (await put_rules(merchant, [rule])).status_code == 200
    statuses = []
    for _ in range(6):
        payment_id, response = await pay(merchant, await new_user(merchant))
        assert response.status_code == 200, response.text
        statuses.append(response.json()["status"])
    assert statuses == ["succeeded"] * 5 + ["requires_capture"]
    held = response.json()
    assert held["amount_received"] == "0.00" and held["amount_capturable"] == "19.99"
    [decision] = await decisions(database, payment_id)
    assert (decision["action"], decision["fired"], decision["inputs"]["card_attempts_10m"]) == (
        "review", ["card_velocity"], "6")
    audit = (await merchant.client.get("/api/audit", params={"action": "fraud.review", "object_id": payment_id}))
    assert len(audit.json()["data"]) == 1
    # The rule's review is in the one list; approve captures the held payment...
    review = held["review"]
    assert (review["status"], review["source"], held["risk"]["rules"]) == ("open", "rule", ["card_velocity"])
    listed = (await merchant.client.get("/api/reviews", params={"status": "open"})).json()["data"]
    assert review["id"] in [r["id"] for r in listed]
    approved = await merchant.client.post(f"/api/reviews/{review['id']}/approve", headers={"Prefer": "wait=10"})
    assert approved.status_code == 200, approved.text
    after = (await merchant.client.get(f"/api/payments/{payment_id}")).json()
    assert (after["status"], after["amount_received"], after["review"]["status"]) == ("succeeded", "19.99", "approved")
    # ... and deny cancels the next one, still the same card within the window.
    denied_id, response = await pay(merchant, await new_user(merchant))
    assert response.json()["status"] == "requires_capture", response.text
    denied = await merchant.client.post(f"/api/reviews/{response.json()['review']['id']}/deny",
                                        headers={"Prefer": "wait=10"})
    assert denied.status_code == 200, denied.text
    after = (await merchant.client.get(f"/api/payments/{denied_id}")).json()
    assert (after["status"], after["amount_received"], after["review"]["status"]) == ("canceled", "0.00", "denied")


async def test_twenty_declines_from_one_ip_then_a_good_card_is_blocked_without_stripe(merchant: Merchant,
                                                                                     sim) -> None:  # type: ignore[no-untyped-def]
    device = {"ip_address": "198.51.100.7", "user_agent": "curl/8"}
    answers = []
    for _ in range(20):  # a card tester: a new account and a declined card each time, one IP
        _, response = await pay(merchant, await new_user(merchant), "pm_card_chargeDeclined", **device)
        answers.append(response.json()["error"]["type"])
    # The first ten reach Stripe and are declined; from then on the IP is blocked by default.
    assert answers == ["card_error"] * 10 + ["fraud_error"] * 10
    methods_read = len(sim_requests(sim, operation="GET /v1/payment_methods/{payment_method}"))

    payment_id, response = await pay(merchant, await new_user(merchant), "pm_card_visa", **device)
    blocked(response, "default_card_testing_ip", payment_id)
    payment = (await merchant.client.get(f"/api/payments/{payment_id}")).json()
    assert payment["status"] == "canceled"
    intent = payment["stripe_payment_intent_id"]
    assert not [r for r in sim_requests(sim) if intent in r["path"] and r["path"] != f"/v1/payment_intents/{intent}"
                or r.get("idempotency_key") == f"paymentd:{payment_id}:confirm:1"]
    assert len(sim_requests(sim, operation="GET /v1/payment_methods/{payment_method}")) == methods_read

    # Another IP is not held to it.
    _, response = await pay(merchant, await new_user(merchant), "pm_card_visa", ip_address="198.51.100.8",
                            user_agent="curl/8")
    assert response.status_code == 200, response.text


async def test_decisions_keep_their_inputs_sealed(merchant: Merchant, database: Database) -> None:
    assert (await put_rules(merchant, [{"id": "r", "condition": 'email_domain == "x"', "action": "block"}])).status_code == 200
    user = await new_user(merchant, "sealed@example.com")
    payment_id, response = await pay(merchant, user, ip_address="192.0.2.44", user_agent="Secret-Agent/1")
    assert response.status_code == 200, response.text
    async with database.sql_connection() as conn:
        raw = await conn.fetch("SELECT inputs::text AS t, keys::text AS k FROM fraud_decisions WHERE payment_id = $1",
                               uuid.UUID(payment_id))
    assert len(raw) == 2  # create and confirm
    for row in raw:
        for secret in ("sealed@example.com", "192.0.2.44", "Secret-Agent"):
            assert secret not in row["t"] and secret not in row["k"]
    opened = (await decisions(database, payment_id))[-1]["inputs"]
    assert (opened["email"], opened["ip_address"], opened["user_agent"]) == (
        "sealed@example.com", "192.0.2.44", "Secret-Agent/1")


async def test_each_decision_names_the_version_it_used_while_the_rules_change(merchant: Merchant,
                                                                              database: Database) -> None:
    version = (await put_rules(merchant, [{"id": "v1", "condition": "true", "action": "allow"}])).json()["version"]
    users = [await new_user(merchant) for _ in range(12)]

    async def change_rules() -> int:
        await asyncio.sleep(0.05)
        response = await put_rules(merchant, [{"id": "v2", "condition": "true", "action": "allow"}], version=version)
        return response.json()["version"]

    *paid, new_version = await asyncio.gather(*[pay(merchant, u) for u in users], change_rules())
    assert new_version == version + 1
    seen = set()
    for payment_id, response in paid:
        assert response.status_code == 200, response.text
        for decision in await decisions(database, payment_id):
            # The rule that fired is the one of the version the decision names.
            assert decision["fired"] == [f"v{decision['rule_set_version'] - version + 1}"], decision
            seen.add(decision["rule_set_version"])
    assert seen <= {version, new_version}
    payment_id, _ = await pay(merchant, users[0])
    assert {d["rule_set_version"] for d in await decisions(database, payment_id)} == {new_version}


async def test_declines_in_a_row_and_first_payment(merchant: Merchant, database: Database) -> None:
    rules = [{"id": "streak", "condition": "user_declines_in_row >= 2", "action": "block"},
             {"id": "newcomer", "condition": "is_first_payment and amount > 100", "action": "review"}]
    assert (await put_rules(merchant, rules)).status_code == 200
    user = await new_user(merchant)
    _, first = await pay(merchant, user, amount="150.00")
    assert first.json()["status"] == "requires_capture", first.text  # held: a new user's first, large payment
    for _ in range(2):
        _, declined = await pay(merchant, user, "pm_card_chargeDeclined")
        assert declined.json()["error"]["type"] == "card_error"
    payment_id, response = await pay(merchant, user)
    blocked(response, "streak", payment_id)


async def test_rules_off_for_the_account(merchant: Merchant, database: Database) -> None:
    assert (await put_rules(merchant, [])).status_code == 200
    payment_id, response = await pay(merchant, await new_user(merchant))
    assert response.status_code == 200
    assert await decisions(database, payment_id) == []
    async with database.sql_connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM fraud_counters WHERE account_id = $1",
                                   merchant.account_id) == 0
