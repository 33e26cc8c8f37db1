"""HTTP routes of /api/webhook_endpoints (scope `admin`): parse -> endpoints -> schema."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from paymentd.auth.keys import Scope
from paymentd.auth.service import Principal
from paymentd.deps import require
from paymentd.http import ExactJSONRoute
from paymentd.outbound.endpoints import Endpoints
from paymentd.outbound.schemas import (
    DeliveryOut,
    DeliveryPage,
    EndpointCreate,
    EndpointCreated,
    EndpointList,
    EndpointOut,
    SecretOut,
    present_delivery,
    present_endpoint,
)
from paymentd.schemas import API_ERRORS

router = APIRouter(prefix="/api/webhook_endpoints", tags=["outbound webhooks"], route_class=ExactJSONRoute,
                   responses=API_ERRORS)


async def get_endpoints(request: Request) -> Endpoints:
    return request.app.state.endpoints


Service = Annotated[Endpoints, Depends(get_endpoints)]
Admin = Annotated[Principal, Depends(require(Scope.admin))]


@router.post("", status_code=201, response_model=EndpointCreated)
async def create_endpoint(body: EndpointCreate, principal: Admin, endpoints: Service) -> EndpointCreated:
    row, secret = await endpoints.create(principal.account_id, body)
    return EndpointCreated(**present_endpoint(row).model_dump(), secret=secret)


@router.get("", response_model=EndpointList)
async def list_endpoints(principal: Admin, endpoints: Service) -> EndpointList:
    return EndpointList(data=[present_endpoint(row) for row in await endpoints.list(principal.account_id)])


@router.get("/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: uuid.UUID, principal: Admin, endpoints: Service) -> EndpointOut:
    return present_endpoint(await endpoints.get(principal.account_id, endpoint_id))


@router.delete("/{endpoint_id}", response_model=EndpointOut)
async def delete_endpoint(endpoint_id: uuid.UUID, principal: Admin, endpoints: Service) -> EndpointOut:
    return present_endpoint(await endpoints.delete(principal.account_id, endpoint_id))


@router.post("/{endpoint_id}/pause", response_model=EndpointOut)
async def pause_endpoint(endpoint_id: uuid.UUID, principal: Admin, endpoints: Service) -> EndpointOut:
    return present_endpoint(await endpoints.pause(principal.account_id, endpoint_id))


@router.post("/{endpoint_id}/resume", response_model=EndpointOut)
async def resume_endpoint(endpoint_id: uuid.UUID, principal: Admin, endpoints: Service) -> EndpointOut:
    return present_endpoint(await endpoints.resume(principal.account_id, endpoint_id))


@router.post("/{endpoint_id}/rotate_secret", response_model=SecretOut)
async def rotate_secret(endpoint_id: uuid.UUID, principal: Admin, endpoints: Service) -> SecretOut:
    return SecretOut(secret=await endpoints.rotate_secret(principal.account_id, endpoint_id))


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    endpoint_id: uuid.UUID, principal: Admin, endpoints: Service,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> DeliveryPage:
    rows, more = await endpoints.deliveries(principal.account_id, endpoint_id, limit=limit, cursor=cursor)
    return DeliveryPage(data=[present_delivery(row, kind) for row, kind in rows], has_more=more,
                        next_cursor=str(rows[-1][0].id) if more and rows else None)


@router.post("/{endpoint_id}/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
async def retry_delivery(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, principal: Admin,
                         endpoints: Service) -> DeliveryOut:
    row, kind = await endpoints.redeliver(principal.account_id, endpoint_id, delivery_id)
    return present_delivery(row, kind)
