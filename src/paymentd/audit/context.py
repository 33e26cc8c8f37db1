"""Who is acting and for which request, without threading arguments through every
service: set at the HTTP edge (request id, client IP), by authentication (the API
key), by worker jobs (webhook:<event id>, reconciler) and by the CLI (operator).
Tasks a request spawns copy it, so background work keeps its request's context."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Actor:
    """API.md's actor: type api_key | webhook | reconciler | operator | system, and its id."""

    type: str
    id: str | None = None


SYSTEM = Actor("system")
RECONCILER = Actor("reconciler")


@dataclass(frozen=True)
class Context:
    request_id: str | None = None
    client_ip: str | None = None
    actor: Actor | None = None


_current: ContextVar[Context] = ContextVar("paymentd_audit_context", default=Context())


def current() -> Context:
    return _current.get()


def begin_request(request_id: str | None, client_ip: str | None) -> None:
    """At the HTTP edge: a fresh context for this request (its task owns it)."""
    _current.set(Context(request_id, client_ip))


def act_as(actor: Actor) -> None:
    _current.set(replace(_current.get(), actor=actor))


@contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """For a job or a command: entries recorded inside name `actor`."""
    token = _current.set(replace(_current.get(), actor=actor))
    try:
        yield
    finally:
        _current.reset(token)
