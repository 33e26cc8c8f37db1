"""`GET /api/audit` (API.md "Audit trail"): HTTP only, the query lives in query.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from paymentd.audit import query
from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.deps import require
from paymentd.http import ExactJSONRoute
from paymentd.schemas import API_ERRORS

router = APIRouter(prefix="/api/audit", tags=["audit"], route_class=ExactJSONRoute, responses=API_ERRORS)


@router.get("")
async def list_entries(
    request: Request,
    principal: Annotated[Principal, Depends(require(Scope.audit_read))],
    object_id: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    actor: Annotated[str | None, Query(max_length=300)] = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    where = query.parse_filter(object_id, action, actor, created_gte, created_lt)
    entries, has_more = await query.page(request.app.state.database, principal.account_id, where,
                                         limit=limit, cursor=cursor)
    next_cursor = query.encode_cursor(entries[-1]["seq"]) if has_more and entries else None
    return {"data": entries, "has_more": has_more, "next_cursor": next_cursor}
