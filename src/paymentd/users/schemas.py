"""Request and response bodies of /api/users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from paymentd.schemas import Email, RequestModel


class UserCreate(RequestModel):
    email: Email
    name: Annotated[str, Field(min_length=1, max_length=200)]
    external_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    external_id: str | None
    created_at: datetime
