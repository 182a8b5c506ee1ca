"""One router per resource, collected here."""

from fastapi import APIRouter

from backend.app.routers import (
    actions,
    auth,
    faucet,
    forward,
    governance,
    health,
    market,
    market_permits,
    metrics,
    pools,
    reads,
    risk,
)

api_router = APIRouter()
api_router.include_router(faucet.router)
api_router.include_router(actions.router)
api_router.include_router(health.router)
api_router.include_router(reads.router, prefix="/api/v1")
api_router.include_router(pools.router, prefix="/api/v1")
api_router.include_router(auth.router, prefix="/api/v1")
api_router.include_router(forward.router, prefix="/api/v1")
api_router.include_router(risk.router, prefix="/api/v1")
api_router.include_router(metrics.router, prefix="/api/v1")
api_router.include_router(governance.router, prefix="/api/v1")
api_router.include_router(market.router, prefix="/api/v1")
api_router.include_router(market_permits.router, prefix="/api/v1")
