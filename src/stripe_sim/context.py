"""Per-request facts shared by every resource handler.

Kept apart from `sim.py` so resource modules can import it without cycles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1.0 pins


@dataclass(slots=True)
class Ctx:
    """Facts about the API request being served, stamped onto the events it causes."""

    request_id: str | None = None
    idempotency_key: str | None = None
    api_version: str = API_VERSION


SYSTEM = Ctx()  # for changes Stripe makes on its own (settlements, refund failures)


def now() -> int:
    return int(time.time())
