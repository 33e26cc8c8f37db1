"""Pydantic building blocks shared by every resource's request and response schemas."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

# Stripe's own metadata limits: 50 keys, 40-character keys, 500-character values.
MetadataKey = Annotated[str, Field(min_length=1, max_length=40)]
MetadataValue = Annotated[str, Field(max_length=500)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=50)]

# A decimal in major units, as a JSON string or number (parsed exactly, see http.py).
Amount = Annotated[
    StrictStr | StrictInt | Decimal,
    Field(description='Decimal in the currency\'s major unit, e.g. "19.99"', examples=["19.99"]),
]
Currency = Annotated[str, Field(min_length=3, max_length=3, description="ISO 4217 code, any case")]
PaymentMethodId = Annotated[str, Field(pattern=r"^pm_[A-Za-z0-9_]{1,200}$", description="A Stripe payment method id")]
Email = Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}$", max_length=254)]


class RequestModel(BaseModel):
    """Unknown fields are refused, as Stripe refuses unknown parameters."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # card_error adds decline_code and payment_id

    type: str
    code: str | None
    message: str
    param: str | None
    request_id: str


class ErrorEnvelope(BaseModel):
    """Every error, from any endpoint (API.md, "Errors")."""

    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` documenting the error envelope under each status."""
    return {status: {"model": ErrorEnvelope, "description": "Error"} for status in statuses}


# What any authenticated /api route may answer besides success. Listing 422 also
# replaces FastAPI's default validation schema, which paymentd never returns.
API_ERRORS = error_responses(400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 502, 503, 504)
