"""HTTP routes of /api/users: parse, call the service, shape the response."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.deps import get_database, require
from paymentd.http import ExactJSONRoute
from paymentd.schemas import API_ERRORS
from paymentd.users import service
from paymentd.users.schemas import UserCreate, UserOut

router = APIRouter(prefix="/api/users", tags=["users"], route_class=ExactJSONRoute, responses=API_ERRORS)


@router.post("", status_code=201, response_model=UserOut)
async def create_user(
    body: UserCreate,
    principal: Principal = Depends(require(Scope.payments_write)),
    database: Database = Depends(get_database),
) -> UserOut:
    return UserOut.model_validate(await service.create_user(database, principal, body), from_attributes=True)


@router.get("/{user_id}", response_model=UserOut)
async def get_user(
    user_id: uuid.UUID,
    principal: Principal = Depends(require(Scope.payments_read)),
    database: Database = Depends(get_database),
) -> UserOut:
    return UserOut.model_validate(await service.get_user(database, principal, user_id), from_attributes=True)
