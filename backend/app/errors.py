"""Every error leaves the API as JSON ``{"code": <machine>, "reason": <human>, ...}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from web3.exceptions import Web3RPCError

from backend.db.session import DATABASE_ERRORS, database_reason
from backend.services.errors import (
    ActionNotFound,
    AuthFailed,
    ChainUnavailable,
    Forbidden,
    IdempotencyConflict,
    MalformedRequest,
    ServiceError,
    TransactionReverted,
    WrongChain,
)
from gpucap.deployment import ManifestError

log = logging.getLogger(__name__)

SERVICE_STATUS: dict[type[ServiceError], int] = {
    ActionNotFound: 404,
    AuthFailed: 401,
    Forbidden: 403,
    MalformedRequest: 422,
    TransactionReverted: 422,  # the call would revert now: code is the contract's error name
    IdempotencyConflict: 409,
    ChainUnavailable: 503,
    WrongChain: 503,
}
HTTP_CODES = {
    400: "MalformedBody",
    404: "NotFound",
    405: "MethodNotAllowed",
    401: "Unauthorized",
    403: "Forbidden",
}


class ApiError(Exception):
    """Raised by routes for a specific HTTP answer; ``extra`` joins the JSON body."""

    def __init__(self, status_code: int, code: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status_code, self.code, self.reason, self.extra = status_code, code, reason, extra


def error_body(code: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "reason": reason, **extra}


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


# Every route may answer these whatever it does (request validation; a database that is
# busy or down): the document says so, with the body the handlers below send.
COMMON_ERRORS = {
    "422": "Invalid request: `ValidationFailed` with the failing fields in `errors`, "
    "or the route's own code",
    "503": "A dependency (database or chain) is unavailable; retry shortly",
}
# ... and routes that take a body, this one (a body that is not UTF-8 JSON).
BODY_ERRORS = {"400": "`MalformedBody`: the body cannot be parsed"}


def document_errors(app: FastAPI) -> None:
    """The OpenAPI document as the handlers answer: FastAPI documents its own 422 body
    (``{"detail": [...]}``), which this API never sends. Every operation's 422 and 503
    are ``ErrorPublic`` (``errors`` on a ValidationFailed), and so is the 400 of a route
    that takes a body."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        error_ref = {"$ref": "#/components/schemas/ErrorPublic"}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        if "ErrorPublic" not in schemas:  # no route names it: add it (and its parts)
            from backend.app.schemas import ErrorPublic

            model = ErrorPublic.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(model.pop("$defs", {}))
            schemas["ErrorPublic"] = model
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                common = {**COMMON_ERRORS, **(BODY_ERRORS if "requestBody" in operation else {})}
                for status, description in common.items():
                    entry = responses.get(status)
                    # A route's own documented answer stays (/health's 503 is its report).
                    if entry is None or "HTTPValidationError" in str(entry.get("content")):
                        responses[status] = {
                            "description": description,
                            "content": {"application/json": {"schema": error_ref}},
                        }
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.reason, **exc.extra), status_code=exc.status_code
        )

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        status = getattr(exc, "status", None) or next(
            (s for t, s in SERVICE_STATUS.items() if isinstance(exc, t)), 500
        )
        if status >= 500:
            log.warning("%s: %s", exc.code, exc.reason)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(exc.code, exc.reason), status_code=status, headers=headers)

    @app.exception_handler(ManifestError)
    async def _manifest_error(_: Request, exc: ManifestError) -> JSONResponse:
        return JSONResponse(error_body("DeploymentUnavailable", str(exc)), status_code=503)

    async def _database_error(_: Request, exc: Exception) -> JSONResponse:
        # The request's transaction was rolled back, so nothing is half-written: a client
        # may send the same request again (same idempotency key) and nothing doubles.
        busy = "database is locked" in str(getattr(exc, "orig", exc))
        log.warning("database %s: %s", "busy" if busy else "unavailable", database_reason(exc))
        code, reason = (
            ("DatabaseBusy", "the database is busy with other writes; retry shortly")
            if busy
            else ("DatabaseUnavailable", "the database cannot be reached; retry shortly")
        )
        return JSONResponse(error_body(code, reason), status_code=503, headers={"Retry-After": "1"})

    # Connection refused or dropped, a closed connection, no pooled connection in time.
    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database_error)

    @app.exception_handler(Web3RPCError)
    async def _node_error(_: Request, exc: Web3RPCError) -> JSONResponse:
        # The node answered our own read with an error (a request's own faults are
        # mapped to 4xx where they are checked): the API cannot serve this now.
        log.warning("node error: %s", exc)
        return JSONResponse(
            error_body("NodeError", f"the chain node answered an error: {exc}"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _loc(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        reason = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(error_body("ValidationFailed", reason, errors=errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "HTTPError")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
