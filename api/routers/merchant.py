"""Merchant staff endpoints: only their own merchant."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from api.bodies import StrictRoute
from api.deps import MerchantDep, ServicesDep
from api.schemas import PROTECTED_ERRORS, MerchantPublic
from points.people import get
from points.registry import Merchant

router = APIRouter(
    prefix="/api/v1/merchant",
    tags=["merchant"],
    responses=PROTECTED_ERRORS,
    route_class=StrictRoute,
)


@router.get("", response_model=MerchantPublic, summary="The merchant I work for")
def my_merchant(caller: MerchantDep, services: ServicesDep) -> MerchantPublic:
    """The merchant the calling member of merchant staff works for; no other merchant is visible."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id

    def work(session: Session) -> MerchantPublic:
        return MerchantPublic.model_validate(get(session, Merchant, merchant_id))

    return services.read(work)
