"""Content negotiation by `Accept`, one implementation for every endpoint that offers
more than JSON (receipts, reports): q-values honoured, wildcards allowed, ties to the
endpoint's own order, 406 in the contract's envelope for what it cannot give."""

from __future__ import annotations

from collections.abc import Sequence

from paymentd.errors import InvalidRequest


def negotiate(accept: str | None, offered: Sequence[str], what: str) -> str:
    """The offered type `accept` prefers; the first offered when the header is absent or empty.
    `what` names the resource in the 406 message ("The receipt")."""
    if not accept or not accept.strip():
        return offered[0]
    candidates: list[tuple[float, int, int, str]] = []
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind, _, sub = media.lower().partition("/")
        if q <= 0 or not sub:
            continue
        for rank, offer in enumerate(offered):
            o_kind, _, o_sub = offer.partition("/")
            if (kind, sub) == (o_kind, o_sub):
                specificity = 2
            elif kind == o_kind and sub == "*":
                specificity = 1
            elif (kind, sub) == ("*", "*"):
                specificity = 0
            else:
                continue
            # Higher q first, then the more specific match, then our order.
            candidates.append((q, specificity, -rank, offer))
    if not candidates:
        listed = ", ".join(offered[:-1]) + f" or {offered[-1]}" if len(offered) > 1 else offered[0]
        raise InvalidRequest(f"{what} is available as {listed}.", code="not_acceptable", param="Accept", status=406)
    return max(candidates)[3]
