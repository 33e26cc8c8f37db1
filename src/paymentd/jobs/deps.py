"""What background work needs (database, provider, settings), handed to the worker
by whoever runs it: tasks are module functions and must not build their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paymentd.config import Settings
from paymentd.db import Database
from paymentd.providers.base import PaymentProvider


@dataclass(frozen=True)
class Deps:
    database: Database
    provider: PaymentProvider
    settings: Settings
    # Outbound webhooks' resolver and clock (outbound/runtime.py); None: the real ones.
    outbound: Any = None

    def outbound_runtime(self) -> Any:
        from paymentd.outbound.runtime import DEFAULT

        return self.outbound or DEFAULT
