"""Structured JSON logs (structlog) that can never carry a secret or a card number.

Request id, account and payment ids are bound in contextvars by the HTTP layer
and the services; two processors scrub every event before it is written.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

import structlog

from paymentd.card_data import redact

_SECRET_WORDS = ("secret", "password", "authorization", "api_key", "token", "card")


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    """Keys are few and repeat on every event: decide each once."""
    return any(word in key.lower() for word in _SECRET_WORDS)


def _scrub(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if _secret_key(key):
            event[key] = "[REDACTED]"
        elif isinstance(value, str):
            event[key] = redact(value)
    return event


def configure(level: str = "INFO", *, json: bool = True) -> None:
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("paymentd")
