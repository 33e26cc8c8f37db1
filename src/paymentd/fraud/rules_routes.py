"""GET/PUT /api/fraud/rules (scope admin): HTTP only; parsing in rules.py, storage in store.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from paymentd import audit
from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.deps import require
from paymentd.errors import InvalidRequest
from paymentd.fraud import rules, store
from paymentd.fraud.rules_schemas import RuleSetIn, RuleSetOut, present
from paymentd.http import ExactJSONRoute
from paymentd.schemas import API_ERRORS, error_responses

router = APIRouter(prefix="/api/fraud", tags=["fraud"], route_class=ExactJSONRoute, responses=API_ERRORS)
Admin = Annotated[Principal, Depends(require(Scope.admin))]


@router.get("/rules", response_model=RuleSetOut)
async def get_rules(request: Request, principal: Admin) -> RuleSetOut:
    async with request.app.state.database.sql_connection() as conn:
        return present(await store.current(conn, principal.account_id))


@router.put("/rules", response_model=RuleSetOut, responses=error_responses(409))
async def put_rules(body: RuleSetIn, request: Request, principal: Admin) -> RuleSetOut:
    raw = {"rules": [rule.model_dump() for rule in body.rules], "lists": body.lists}
    try:
        rules.parse(raw, 0)  # every mistake answered before a transaction is opened
        async with request.app.state.database.sql_transaction() as conn:
            saved = await store.save(conn, principal.account_id, raw, body.version,
                                     audit.Actor("api_key", str(principal.api_key_id)))
    except rules.RuleSetInvalid as error:
        raise InvalidRequest(error.message, code="invalid_rule", param=error.param) from None
    return present(saved)
