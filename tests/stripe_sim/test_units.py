"""Unit tests for the pieces below HTTP: form decoding, parameter coercion, list paging, snapshots."""

from __future__ import annotations

import pytest

from stripe_sim import forms, params
from stripe_sim.errors import StripeError
from stripe_sim.snapshots import Packer
from stripe_sim.store import Collection


def test_decode_nested_brackets():
    assert forms.decode(b"a=1&m[k]=v&l[0]=x&l[1]=y&e[]=p&e[]=q&d[x][y]=z&blank=") == {
        "a": "1", "m": {"k": "v"}, "l": {"0": "x", "1": "y"}, "e": {"0": "p", "1": "q"}, "d": {"x": {"y": "z"}},
        "blank": ""}


@pytest.mark.parametrize("raw", [b"a[b=1", b"[a]=1", b"a=1&a[b]=2"])
def test_decode_refuses_malformed_keys(raw):
    with pytest.raises(forms.FormError):
        forms.decode(raw)


def test_check_coerces_types():
    checked = params.check("POST /v1/payment_intents", forms.decode(
        b"amount=100&currency=usd&confirm=false&payment_method_types[1]=b&payment_method_types[0]=a"))
    assert checked == {"amount": 100, "currency": "usd", "confirm": False, "payment_method_types": ["a", "b"]}


def test_check_reports_nested_unknown_with_full_path():
    with pytest.raises(StripeError) as err:
        params.check("POST /v1/payment_intents", forms.decode(b"amount=1&currency=usd&shipping[address][x]=1"))
    assert err.value.error["param"] == "shipping[address][x]"
    assert err.value.error["code"] == "parameter_unknown"


def test_check_reports_nested_missing():
    with pytest.raises(StripeError) as err:
        params.check("POST /v1/payment_intents", forms.decode(b"amount=1&currency=usd&shipping[name]=x"))
    assert err.value.error["code"] == "parameter_missing" and err.value.error["param"] == "shipping[address]"


def test_check_empty_string_unsets_where_stripe_allows_it():
    checked = params.check("POST /v1/payment_intents/{intent}", forms.decode(b"metadata=&setup_future_usage="))
    assert checked == {"metadata": "", "setup_future_usage": ""}
    with pytest.raises(StripeError) as err:
        params.check("POST /v1/payment_intents/{intent}", forms.decode(b"amount="))
    assert err.value.error["code"] == "parameter_invalid_empty"


def test_every_served_operation_has_a_schema():
    from stripe_sim import routes

    assert set(routes.HANDLERS) == set(params.SCHEMAS)


def test_collection_pages_newest_first_and_skips_removed():
    items = Collection("thing")
    for i in range(5):
        items.add({"id": f"t{i}", "created": i}, "owner" if i % 2 else None)
    items.index.remove("t3")
    data, more = items.page(limit=2)
    assert [d["id"] for d in data] == ["t4", "t2"] and more
    data, more = items.page(limit=10, starting_after="t2")
    assert [d["id"] for d in data] == ["t1", "t0"] and not more
    data, more = items.page(limit=1, ending_before="t0")
    assert [d["id"] for d in data] == ["t1"] and more
    data, _ = items.page(limit=10, owner="owner")
    assert [d["id"] for d in data] == ["t3", "t1"]
    assert items.page(limit=10, owner="nobody") == ([], False)


def test_packer_round_trips_before_and_after_learning():
    packer = Packer(samples=2)
    blobs = [packer.pack(b'{"id":"pi_%d","object":"payment_intent"}' % i) for i in range(5)]
    assert packer.zdict is not None
    assert [packer.unpack(b) for b in blobs] == [b'{"id":"pi_%d","object":"payment_intent"}' % i
                                                 for i in range(5)]


def test_cold_objects_are_packed_and_come_back_intact():
    items = Collection("thing", hot_limit=2)
    for i in range(4):
        items.add({"id": f"t{i}", "created": i, "nested": {"n": i}})
    assert [type(items.objects[f"t{i}"]) for i in range(4)] == [bytes, bytes, dict, dict]
    assert items.peek("t0") == {"id": "t0", "created": 0, "nested": {"n": 0}}
    assert type(items.objects["t0"]) is bytes  # peeking leaves it packed
    thawed = items.get("t0")
    thawed["created"] = 99
    assert type(items.objects["t2"]) is bytes  # the least recently used one made room
    assert items.get("t0")["created"] == 99
    assert [d["id"] for d in items.page(limit=10)[0]] == ["t3", "t2", "t1", "t0"]
