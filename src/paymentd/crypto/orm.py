"""SQLAlchemy hooks: ORM rows seal their sealed columns on the way to the database
and open them on the way back, so services and schemas only ever see plaintext.

Mapper events see the row's key (bound as associated data), which a column type
would not. Core statements (`insert(...).values()`) bypass them and seal by hand.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.attributes import set_committed_value

from paymentd import crypto
from paymentd.crypto.fields import Field, comparable, of_table
from paymentd.outbound.models import OutboundEvent, WebhookDelivery, WebhookEndpoint
from paymentd.payments.models import Payment
from paymentd.receipts.models import ReceiptEmail
from paymentd.users.models import User
from paymentd.webhooks.models import WebhookEvent

# Stashed on each loaded instance: column -> (plaintext as loaded, stored value), so an
# unchanged field is written back as it was (no new ciphertext, no churn for rotation).
LOADED = "_paymentd_sealed"
_PLAIN = "paymentd_plain"


def email_index(ring: crypto.Keyring, email: str) -> str:
    """The blind index a user is found by email with (case-insensitive, as mail is)."""
    return ring.blind_index(email.strip().casefold(), purpose="users.email")


class _Mapped:
    """One ORM class's sealed columns, as attribute keys."""

    def __init__(self, cls: type) -> None:
        mapper: Mapper = inspect(cls)
        table = cls.__table__  # type: ignore[attr-defined]
        self.fields: list[tuple[str, Field]] = [
            (mapper.get_property_by_column(table.c[f.column]).key, f) for f in of_table(table.name)
        ]
        key_columns = [name for name, _ in of_table(table.name)[0].key]  # a table's fields share its key
        self.keys = {name: mapper.get_property_by_column(table.c[name]).key for name in key_columns}

    def row_id(self, target: Any, field: Field) -> str:
        return field.row_id(lambda name: getattr(target, self.keys[name]))


_CLASSES = {cls: _Mapped(cls) for cls in (User, Payment, ReceiptEmail, WebhookEvent, WebhookEndpoint, OutboundEvent,
                                         WebhookDelivery)}


def _before_write(mapper: Mapper, connection: Any, target: Any) -> None:
    mapped = _CLASSES[type(target)]
    state = inspect(target)
    ring = crypto.keyring()
    for attr in mapped.keys.values():  # the key is associated data: known before the insert
        if attr == "id" and getattr(target, attr) is None:
            setattr(target, attr, uuid.uuid4())
    plain: dict[str, Any] = {}
    for attr, field in mapped.fields:
        if state.key is not None and not state.attrs[attr].history.has_changes():
            continue  # an update that leaves it alone
        value = getattr(target, attr)
        plain[attr] = value
        setattr(target, attr, field.seal(ring, value, mapped.row_id(target, field)))
        if isinstance(target, User) and attr == "email" and value is not None:
            target.email_index = email_index(ring, value)
    state.info[_PLAIN] = plain


def _after_write(mapper: Mapper, connection: Any, target: Any) -> None:
    for attr, value in inspect(target).info.pop(_PLAIN, {}).items():
        set_committed_value(target, attr, value)


def _open(target: Any, attrs: Any = None) -> None:
    mapped = _CLASSES[type(target)]
    ring = crypto.keyring()
    loaded = target.__dict__.setdefault(LOADED, {})
    for attr, field in mapped.fields:
        if attr not in target.__dict__ or (attrs is not None and attr not in attrs):
            continue
        stored = target.__dict__[attr]
        value = field.open(ring, stored, mapped.row_id(target, field))
        loaded[field.column] = (comparable(field.kind, value), stored)
        set_committed_value(target, attr, value)


for _cls in _CLASSES:
    event.listen(_cls, "before_insert", _before_write)
    event.listen(_cls, "before_update", _before_write)
    event.listen(_cls, "after_insert", _after_write)
    event.listen(_cls, "after_update", _after_write)
    event.listen(_cls, "load", lambda target, context: _open(target))
    event.listen(_cls, "refresh", lambda target, context, attrs: _open(target, attrs))
