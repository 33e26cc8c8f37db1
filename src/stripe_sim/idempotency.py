"""Stripe-style idempotency keys.

Stripe saves the first response to a key (errors included) once the request
starts executing, replays it for the same parameters with
`Idempotent-Replayed: true`, refuses other parameters with 400
`idempotency_error`, and answers 409 while the first request still runs.
Saved bodies are packed (see snapshots.py): a benchmark keeps hundreds of thousands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import StripeError, invalid_request
from .snapshots import pack, unpack


@dataclass(slots=True)
class Entry:
    """One key's first request: in flight while `status` is 0, then its saved answer."""

    fingerprint: int
    created: float
    status: int = 0          # 0 while the first request is still executing
    body: bytes = b""        # packed JSON body
    headers: tuple = ()

    def response(self) -> bytes:
        return unpack(self.body)


class IdempotencyCache:
    """Saved responses by (API key, Idempotency-Key), oldest first, pruned after `ttl_s`."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.entries: dict[tuple[str, str], Entry] = {}

    def begin(self, scope: tuple[str, str], fingerprint: int) -> Entry | None:
        """Register a new key (returns None), or return the saved entry to replay.

        Raises Stripe's errors for a key reused with other parameters or still in flight.
        """
        now = time.monotonic()
        entry = self.entries.get(scope)
        if entry is not None and now - entry.created > self.ttl_s:
            del self.entries[scope]
            entry = None
        if entry is None:
            self.entries[scope] = Entry(fingerprint, now)
            self._prune(now)
            return None
        if entry.fingerprint != fingerprint:
            raise StripeError(400, {
                "message": f"Keys for idempotent requests can only be used with the same parameters they were "
                           f"first used with. Try using a key other than '{scope[1]}' if you meant to execute a "
                           "different request.",
                "type": "idempotency_error"})
        if entry.status == 0:
            raise invalid_request(
                "There is currently another in-progress request using this Stripe API key (that also used "
                "this idempotency key). Try again later, or use a different idempotency key.",
                code="idempotency_key_in_use", status=409)
        return entry

    def finish(self, scope: tuple[str, str], status: int, body: bytes, headers: tuple = ()) -> None:
        entry = self.entries.get(scope)
        if entry is not None:
            entry.status, entry.body, entry.headers = status, pack(body), headers

    def abandon(self, scope: tuple[str, str]) -> None:
        """Forget a key whose request never executed (faults, rate limits), as Stripe does."""
        entry = self.entries.get(scope)
        if entry is not None and entry.status == 0:
            del self.entries[scope]

    def _prune(self, now: float) -> None:
        # Entries are in creation order, so expired ones are at the front.
        while self.entries:
            scope, first = next(iter(self.entries.items()))
            if now - first.created <= self.ttl_s:
                return
            del self.entries[scope]
