"""Map domain errors to HTTP, in one place, with one body shape.

Every error answer is ``{"error": {"code", "message", "request_id"}}``. Only the domain
error's ``message`` (written for clients) goes out; ``detail`` and unexpected exceptions are
logged with the request id and never returned.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybridvideo import errors
from hybridvideo.stream.tokens import InvalidToken
from hybridvideo.stream.webhooks import InvalidWebhook

log = logging.getLogger("hybridvideo.api")

STATUS: dict[type[errors.HybridVideoError], int] = {
    InvalidToken: 403,
    InvalidWebhook: 401,
    errors.RangeNotSatisfiable: 416,
    errors.InvalidInput: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unauthorized: 401,
    errors.BackendUnavailable: 503,
    errors.ConfigurationError: 500,
}

_HTTP_CODES = {
    400: "INVALID_INPUT",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE",
}


def status_for(exc: errors.HybridVideoError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.HybridVideoError)
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        log.error(
            "request failed",
            extra={"code": exc.code, "detail": exc.detail, "path": request.url.path},
        )
    return error_response(request, status, exc.code, exc.message, headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return error_response(request, 422, "INVALID_INPUT", "; ".join(parts) or "invalid request")


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    headers: Any = getattr(exc, "headers", None)
    return error_response(request, exc.status_code, code, message, headers)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(request, 500, "INTERNAL", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.HybridVideoError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, unexpected)
