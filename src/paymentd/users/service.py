"""Use cases for a merchant's users; every query is scoped to the caller's account."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError

from paymentd import audit
from paymentd.auth.service import Principal
from paymentd.db import Database
from paymentd.errors import Conflict, NotFound
from paymentd.users import repository
from paymentd.users.models import User
from paymentd.users.schemas import UserCreate


async def create_user(database: Database, principal: Principal, data: UserCreate) -> User:
    user = User(account_id=principal.account_id, email=data.email, name=data.name, external_id=data.external_id)
    try:
        async with database.transaction() as session:
            session.add(user)
            await session.flush()
            await session.refresh(user)
            audit.record(session, "user.created", account_id=user.account_id, object_type="user", object_id=user.id,
                         changes={"email": (None, user.email), "name": (None, user.name),
                                  "external_id": (None, user.external_id)})
    except IntegrityError as error:
        raise Conflict(
            "A user with this external_id already exists.", code="resource_already_exists", param="external_id"
        ) from error
    return user


async def get_user(database: Database, principal: Principal, user_id: uuid.UUID) -> User:
    async with database.transaction() as session:
        user = await repository.get(session, principal.account_id, user_id)
    if user is None:
        raise NotFound("No such user.", param="id")
    return user
