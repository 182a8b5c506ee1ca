"""GET /health: chain, Redis, database, worker and chain index, and the work they do
(attestation, oracles, settlement keeper, relayer, actions a reorg re-opened), each with
ok + detail."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backend.app.deps import SettingsDep
from backend.app.schemas import HealthPublic
from backend.services.health import WorkLimits, run_checks

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "Some part is down"}},
)
def health(request: Request, settings: SettingsDep) -> JSONResponse:
    """200 when every part answers, 503 (same body) when one does not."""
    state = request.app.state
    checks = run_checks(
        sessions=state.sessions,
        redis_url=settings.effective_redis_url,
        celery=state.celery,
        get_chain=state.chain_provider,
        timeout=settings.health_timeout_seconds,
        index_max_age_seconds=max(30.0, settings.index_interval_seconds * 15),
        work=WorkLimits(
            max_attestation_lag_s=settings.health_max_attestation_lag_seconds,
            max_keeper_epochs_behind=settings.health_max_keeper_epochs_behind,
            max_keeper_age_s=max(
                settings.health_max_keeper_silence_seconds,
                settings.epoch_settle_interval_seconds * 5,
            ),
            max_pending_age_s=settings.health_max_pending_age_seconds,
            oracle_health_urls=settings.oracle_health_urls,
        ),
    )
    ok = all(c["ok"] for c in checks.values())
    body = HealthPublic.model_validate({"status": "ok" if ok else "degraded", "checks": checks})
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)
