"""In-memory object store with Stripe's list semantics.

Objects are Stripe-shaped dicts keyed by id (O(1) retrieval), packed when
cold so 100,000s of them fit in modest memory. Each
collection also keeps an insertion-ordered index, globally and per owner
(e.g. PaymentIntents by customer), so newest-first pages with
`starting_after` / `ending_before` cost O(limit) however many objects exist.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any, ClassVar

import orjson

from .snapshots import pack, unpack

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class IdFactory:
    """Stripe-looking ids (`pi_3Qx...`): a random per-process stem plus a hex counter, never repeated."""

    def __init__(self) -> None:
        self._stem = "".join(_ALPHABET[b % 62] for b in os.urandom(10))
        self._counter = count(1)

    def new(self, prefix: str) -> str:
        return f"{prefix}_3{self._stem}{next(self._counter):010x}"

    def token(self, size: int = 24) -> str:
        return "".join(_ALPHABET[b % 62] for b in os.urandom(size))


class Index:
    """Append-only ordered id list with positions; removals leave tombstones."""

    __slots__ = ("ids", "pos", "removed")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.removed: set[str] = set()

    def add(self, object_id: str) -> None:
        if object_id in self.pos and object_id not in self.removed:
            return
        self.removed.discard(object_id)
        self.pos[object_id] = len(self.ids)
        self.ids.append(object_id)

    def remove(self, object_id: str) -> None:
        if object_id in self.pos:
            self.removed.add(object_id)

    def newest_first(self, starting_after: str | None, ending_before: str | None) -> Iterator[str]:
        """Ids newest first after the cursor; with ending_before, oldest first before the cursor."""
        ids, removed = self.ids, self.removed
        if ending_before is not None:
            start = self.pos.get(ending_before, len(ids) - 1) + 1
            for i in range(start, len(ids)):
                if ids[i] not in removed and self.pos[ids[i]] == i:
                    yield ids[i]
            return
        start = self.pos[starting_after] - 1 if starting_after in self.pos else len(ids) - 1
        for i in range(start, -1, -1):
            if ids[i] not in removed and self.pos[ids[i]] == i:
                yield ids[i]


class Collection:
    """One resource type: objects by id, a global index and optional per-owner indexes.

    To keep memory flat under load, an object not among the `hot_limit` most recently used is
    kept packed (compressed JSON, a tenth of the size) and rebuilt on its next use. Handlers may
    hold an object's dict for the length of one request: a request touches a handful of
    objects, far fewer than `hot_limit`, so what they hold is never packed under them.
    """

    def __init__(self, kind: str, hot_limit: int | None = None) -> None:
        self.kind = kind
        self.objects: dict[str, dict[str, Any] | bytes] = {}
        self.index = Index()
        self.by_owner: defaultdict[str, Index] = defaultdict(Index)
        self.hot: OrderedDict[str, None] = OrderedDict()
        self.hot_limit = hot_limit

    def _use(self, object_id: str, obj: dict[str, Any] | bytes) -> dict[str, Any]:
        if type(obj) is bytes:
            obj = self.objects[object_id] = orjson.loads(unpack(obj))
        if self.hot_limit is not None:
            self.hot[object_id] = None
            self.hot.move_to_end(object_id)
            while len(self.hot) > self.hot_limit:
                cold_id, _ = self.hot.popitem(last=False)
                cold = self.objects.get(cold_id)
                if type(cold) is dict:
                    self.objects[cold_id] = pack(orjson.dumps(cold))
        return obj  # type: ignore[return-value]

    def add(self, obj: dict[str, Any], *owners: str | None) -> dict[str, Any]:
        """Store `obj`, listed globally and under each given owner id (customer, charge, ...)."""
        self.objects[obj["id"]] = obj
        self.index.add(obj["id"])
        for owner in owners:
            if owner:
                self.by_owner[owner].add(obj["id"])
        return self._use(obj["id"], obj)

    def replace(self, obj: dict[str, Any]) -> None:
        """Put `obj` in place of the stored object with its id (e.g. a deletion stub)."""
        self.objects[obj["id"]] = obj
        self._use(obj["id"], obj)

    def get(self, object_id: str) -> dict[str, Any] | None:
        obj = self.objects.get(object_id)
        return None if obj is None else self._use(object_id, obj)

    def peek(self, object_id: str) -> dict[str, Any]:
        """A read-only view of an object that leaves cold objects packed (for listing)."""
        obj = self.objects[object_id]
        return orjson.loads(unpack(obj)) if type(obj) is bytes else obj

    def page(self, *, limit: int, starting_after: str | None = None, ending_before: str | None = None,
             owner: str | None = None, keep: Callable[[dict[str, Any]], bool] | None = None,
             ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` objects newest first, and whether more exist beyond them."""
        index = self.index if owner is None else self.by_owner.get(owner)
        if index is None:
            return [], False
        found: list[dict[str, Any]] = []
        for object_id in index.newest_first(starting_after, ending_before):
            obj = self.peek(object_id)
            if keep is not None and not keep(obj):
                continue
            if len(found) == limit:
                return (found[::-1] if ending_before else found), True
            found.append(obj)
        return (found[::-1] if ending_before else found), False


class Store:
    """All simulated Stripe state; `reset()` empties it."""

    KINDS: ClassVar[dict[str, str]] = {
        "pi": "payment_intent", "ch": "charge", "pm": "payment_method", "cus": "customer",
        "re": "refund", "we": "webhook_endpoint", "du": "dispute", "prv": "review",
        "issfr": "early_fraud_warning",
    }

    def __init__(self, hot_limit: int | None = None) -> None:
        self.ids = IdFactory()
        self.hot_limit = hot_limit
        self.reset()

    def reset(self) -> None:
        hot = self.hot_limit
        self.payment_intents = Collection("payment_intent", hot)
        self.charges = Collection("charge", hot)
        self.payment_methods = Collection("payment_method", hot)
        self.customers = Collection("customer", hot)
        self.refunds = Collection("refund", hot)
        self.disputes = Collection("dispute", hot)
        self.reviews = Collection("review", hot)
        self.early_fraud_warnings = Collection("early_fraud_warning", hot)
        # Never packed: events and endpoints are held by webhook deliveries across awaits.
        self.events = Collection("event")
        self.webhook_endpoints = Collection("webhook_endpoint")
        # Simulator-only facts that Stripe keeps server-side and never shows.
        self.pm_behaviour: dict[str, Any] = {}
        self.consumed_pms: set[str] = set()
        self.webhook_secrets: dict[str, str] = {}

    def by_prefix(self, object_id: str) -> dict[str, Any] | None:
        """Find any expandable stored object from its id prefix (used by `expand`)."""
        prefix = object_id.split("_", 1)[0]
        kind = self.KINDS.get(prefix)
        return getattr(self, kind + "s").get(object_id) if kind else None

    def set_hot_limit(self, hot_limit: int | None) -> None:
        self.hot_limit = hot_limit
        for collection in (self.payment_intents, self.charges, self.payment_methods, self.customers,
                           self.refunds, self.disputes, self.reviews, self.early_fraud_warnings):
            collection.hot_limit = hot_limit


def now() -> int:
    return int(time.time())
