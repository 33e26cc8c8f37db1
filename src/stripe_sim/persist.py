"""The simulator's state in a file, so a sandbox keeps its Stripe objects across restarts.

With the `state_file` knob, the state is loaded at start, written a moment after each
change (at most once per `save_interval_s`) and at shutdown, each time whole into a
temporary file renamed over the old one (never half-written), readable by its owner only.
Kept: every object (PaymentIntents, charges, payment methods and how they behave,
customers, refunds, disputes, reviews, early fraud warnings), events, and the saved
idempotent answers, so a retry after a restart is answered as before. Not kept: webhook
endpoints (the one from the start options is registered again), deliveries and timers
in flight (a debit settling, a refund about to fail), the request log, knobs.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from .idempotency import Entry
from .snapshots import pack, unpack
from .store import Collection, Index
from .testcards import Behaviour, Decline

FORMAT = 1
COLLECTIONS = ("payment_intents", "charges", "payment_methods", "customers", "refunds", "disputes", "reviews",
               "early_fraud_warnings", "events")
logger = logging.getLogger("stripe_sim")


def _index(index: Index) -> dict[str, Any]:
    return {"ids": index.ids, "removed": sorted(index.removed)}


def _restore_index(data: dict[str, Any]) -> Index:
    index = Index()
    index.ids = list(data["ids"])
    index.pos = {object_id: i for i, object_id in enumerate(index.ids)}  # the last place wins, as in add()
    index.removed = set(data["removed"])
    return index


def _portable(obj: dict[str, Any]) -> dict[str, Any]:
    """An event's frozen data is packed with this process's learnt dictionary: saved as JSON."""
    if type(obj.get("_data")) is bytes:
        return {**obj, "_data": orjson.Fragment(unpack(obj["_data"]))}
    return obj


def _native(obj: dict[str, Any]) -> dict[str, Any]:
    if "_data" in obj:
        obj["_data"] = pack(orjson.dumps(obj["_data"]))
        obj["_request"] = tuple(obj["_request"])
    return obj


def dump(sim: Any) -> bytes:
    store = sim.store
    collections = {}
    for name in COLLECTIONS:
        collection: Collection = getattr(store, name)
        collections[name] = {
            "objects": {object_id: _portable(collection.peek(object_id)) for object_id in collection.objects},
            "index": _index(collection.index),
            "owners": {owner: _index(index) for owner, index in collection.by_owner.items()},
        }
    now = time.monotonic()
    saved = [
        {"api_key": scope[0], "key": scope[1], "fingerprint": entry.fingerprint, "age_s": now - entry.created,
         "status": entry.status, "body": orjson.loads(entry.response()),
         "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in entry.headers]}
        for scope, entry in sim.idempotency.entries.items() if entry.status  # finished answers only
    ]
    return orjson.dumps({
        "format": FORMAT,
        "collections": collections,
        "pm_behaviour": {pm: asdict(b) for pm, b in store.pm_behaviour.items()},
        "consumed_pms": sorted(store.consumed_pms),
        "idempotency": saved,
    })


def load(sim: Any, raw: bytes) -> None:
    data = orjson.loads(raw)
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown state format {data.get('format')!r}")
    store = sim.store
    for name in COLLECTIONS:
        saved = data["collections"].get(name)
        if saved is None:
            continue
        collection: Collection = getattr(store, name)
        collection.objects.update({object_id: _native(obj) for object_id, obj in saved["objects"].items()})
        collection.index = _restore_index(saved["index"])
        for owner, index in saved["owners"].items():
            collection.by_owner[owner] = _restore_index(index)
    for pm, behaviour in data["pm_behaviour"].items():
        decline = behaviour.get("decline")
        store.pm_behaviour[pm] = Behaviour(**{**behaviour, "decline": Decline(**decline) if decline else None})
    store.consumed_pms.update(data["consumed_pms"])
    now = time.monotonic()
    for item in data["idempotency"]:
        sim.idempotency.entries[(item["api_key"], item["key"])] = Entry(
            item["fingerprint"], now - item["age_s"], item["status"], pack(orjson.dumps(item["body"])),
            tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in item["headers"]))


def read(sim: Any, path: Path) -> bool:
    """Load the state file if there is one; True when something was loaded. A file that
    cannot be read is set aside (`.unreadable`) and the simulator starts empty, loudly."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    try:
        load(sim, raw)
    except (ValueError, KeyError, TypeError) as error:
        aside = path.with_name(path.name + ".unreadable")
        path.replace(aside)
        sim.store.reset()
        logger.error("stripe_sim: state file %s unreadable (%s); moved to %s, starting empty", path, error, aside)
        return False
    return True


def write(sim: Any, path: Path) -> None:
    data = dump(sim)
    fresh = path.with_name(path.name + ".new")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(fresh, path)
