"""Radar reviews: payments Radar let through but queued for a human decision.

Opened by Radar's review rule on elevated-risk charges (`review.opened`),
closed by approving it here, or by Stripe itself when the payment is refunded,
its authorization canceled, or it is disputed (`review.closed`). A review never
blocks capture: approving and capturing are separate actions, as at Stripe.
"""

from __future__ import annotations

from typing import Any

from ..context import Ctx, now
from ..errors import invalid_request
from .common import fetch, list_page


def open_for(sim: Any, pi: dict[str, Any], charge: dict[str, Any], pm: dict[str, Any]) -> dict[str, Any]:
    """Create the open review for `charge` and link it from the charge and the PaymentIntent.

    The caller emits `review.opened` once the charge's own events are out, as Stripe orders them.
    """
    address = pm["billing_details"]["address"]
    review = {
        "id": sim.store.ids.new("prv"),
        "object": "review",
        "billing_zip": address["postal_code"] if address else None,
        "charge": charge["id"],
        "closed_reason": None,
        "created": now(),
        "ip_address": None,
        "ip_address_location": None,
        "livemode": False,
        "open": True,
        "opened_reason": "rule",
        "payment_intent": pi["id"],
        "reason": "rule",
        "session": None,
    }
    sim.store.reviews.add(review, charge["id"], pi["id"])
    charge["review"] = pi["review"] = review["id"]
    return review


def close(sim: Any, review_id: str | None, reason: str, ctx: Ctx) -> None:
    """Close an open review (approved, refunded, refunded_as_fraud, disputed); no-op when already closed."""
    review = sim.store.reviews.get(review_id) if review_id else None
    if review is None or not review["open"]:
        return
    previous = {"closed_reason": None, "open": True, "reason": review["reason"]}
    review.update(open=False, closed_reason=reason, reason=reason)
    sim.emit("review.closed", review, ctx, previous)


def close_for_charge(sim: Any, charge: dict[str, Any], reason: str, ctx: Ctx) -> None:
    close(sim, charge.get("review"), reason, ctx)


def retrieve(sim: Any, ctx: Ctx, params: dict[str, Any], review_id: str) -> dict[str, Any]:
    return fetch(sim.store.reviews, review_id, "review")


def approve(sim: Any, ctx: Ctx, params: dict[str, Any], review_id: str) -> dict[str, Any]:
    review = fetch(sim.store.reviews, review_id, "review")
    if not review["open"]:
        raise invalid_request(f"This review ({review_id}) has already been closed ({review['closed_reason']}); "
                              "only an open review can be approved.", param="review")
    close(sim, review_id, "approved", ctx)
    return review


def list_(sim: Any, ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    # Stripe lists only the reviews that still need action.
    return list_page(sim.store.reviews, params, "/v1/reviews", keep=lambda review: review["open"])
