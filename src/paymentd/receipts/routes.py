"""HTTP route of GET /api/payments/{id}/receipt: the receipt in the representation
the caller's `Accept` asks for (JSON by default; 406 for anything we cannot give)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.deps import get_database, require
from paymentd import negotiation
from paymentd.receipts import render, service
from paymentd.schemas import API_ERRORS, error_responses

router = APIRouter(prefix="/api/payments", tags=["payments"], responses=API_ERRORS)

JSON, HTML, PDF = "application/json", "text/html", "application/pdf"
OFFERED = (JSON, HTML, PDF)


def negotiate(accept: str | None) -> str:
    """The offered type the Accept header prefers; JSON when the header is absent or empty."""
    return negotiation.negotiate(accept, OFFERED, "The receipt")


@router.get(
    "/{payment_id}/receipt",
    response_class=Response,
    responses={
        200: {
            "description": "The receipt, in the representation `Accept` asks for",
            "content": {
                JSON: {"schema": {"type": "object"}},
                HTML: {"schema": {"type": "string"}},
                PDF: {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **error_responses(406),
    },
)
async def get_receipt(
    payment_id: uuid.UUID,
    request: Request,
    database: Database = Depends(get_database),
    principal: Principal = Depends(require(Scope.payments_read)),
) -> Response:
    media = negotiate(request.headers.get("accept"))  # before any work: a 406 costs nothing
    locale = getattr(request.app.state.settings, "receipt_locale", None) or "en_US"
    receipt = await service.receipt_for(database, principal.account_id, payment_id, default_locale=locale)
    headers = {"Vary": "Accept"}
    if media == HTML:
        return HTMLResponse(render.html(receipt), headers={**headers, "Content-Security-Policy": render.HTML_CSP})
    if media == PDF:
        headers["Content-Disposition"] = f'inline; filename="receipt-{receipt.number}.pdf"'
        return Response(render.pdf(receipt), media_type=PDF, headers=headers)
    return JSONResponse(receipt.as_json(), headers=headers)
