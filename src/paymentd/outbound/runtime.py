"""What sending needs besides settings: the resolver and the clock, both injectable
(tests swap DNS answers and move time; create_app(outbound=...) and Deps carry them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from paymentd.outbound.targets import Resolver, system_resolver


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    resolver: Resolver = system_resolver
    clock: Callable[[], datetime] = field(default=_now)


DEFAULT = Runtime()
