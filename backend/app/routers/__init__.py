"""One router per resource, collected here."""

from fastapi import APIRouter

from backend.app.routers import actions, faucet, health

api_router = APIRouter()
api_router.include_router(faucet.router)
api_router.include_router(actions.router)
api_router.include_router(health.router)
