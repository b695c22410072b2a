"""The API's exception handlers: how an error that escapes a route is answered.

A dependency outage (Redis, Cassandra or Kafka unreachable, a breaker open) becomes a 503 with
``Retry-After`` (from the dependency's breaker) and ``X-Aura-Degraded: <dependency>-down``, never
a 500; routes' own HTTP errors keep FastAPI's shape (a 503 always carries ``Retry-After``); a model
built from request data inside a route that refuses it is the client's 422; anything else is a
JSON 500. Installed once by ``serving/app.py``; the fast path (``serving/fastpath.py``) answers its
errors with the same handlers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka import KafkaException
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.breakers import DependencyUnavailable
from serving.clients import CASSANDRA_OUTAGE, REDIS_OUTAGE
from serving.fallbacks import DEGRADED_HEADER

log = logging.getLogger(__name__)


def _dependency_of(exc: BaseException) -> str:
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, REDIS_OUTAGE):
        return "redis"
    mod = type(exc).__module__
    if mod.startswith("cassandra"):
        return "cassandra"
    if mod.startswith("confluent_kafka") or isinstance(exc, BufferError):
        return "kafka"
    return "dependency"


class SafeJSONResponse(JSONResponse):
    """JSON whose strings may hold lone surrogates (from ``\\udXXX`` escapes in a request): they are
    replaced instead of failing the UTF-8 encoding."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                          separators=(",", ":")).encode("utf-8", "replace")


def unavailable_response(exc: BaseException, retry_after_s: int = 1) -> JSONResponse:
    dep = _dependency_of(exc)
    detail = exc.detail if isinstance(exc, DependencyUnavailable) else f"{dep} unavailable; retry shortly"
    return JSONResponse({"detail": detail}, status_code=503,
                        headers={"Retry-After": str(retry_after_s), DEGRADED_HEADER: f"{dep}-down"})


def outage_exceptions() -> tuple[type[BaseException], ...]:
    """Every error that means a dependency cannot answer now (answered 503, or by a fallback)."""
    return (DependencyUnavailable, *REDIS_OUTAGE, *CASSANDRA_OUTAGE, KafkaException, BufferError)


async def on_outage(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: dependency outage: %s", request.method, request.url.path, exc)
    state = getattr(request.app.state, "aura", None)
    retry = 1
    if state is not None:
        b = state.breakers.all().get(_dependency_of(exc))
        retry = b.retry_after_s() if b is not None else 1
    return unavailable_response(exc, retry)


async def on_http(request: Request, exc: Exception) -> Response:
    """Routes' own HTTPExceptions, as FastAPI answers them; a 503 always carries Retry-After."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 503 and not (exc.headers and "Retry-After" in exc.headers):
        exc.headers = {**(exc.headers or {}), "Retry-After": "1"}
    return await http_exception_handler(request, exc)


async def on_validation(request: Request, exc: Exception) -> JSONResponse:
    """A model built inside a route from request data refused it: that is the client's 422, not a 500."""
    assert isinstance(exc, ValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
              for e in exc.errors(include_url=False, include_context=False, include_input=False)]
    return JSONResponse({"detail": errors}, status_code=422)


async def on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, rendered so that an echoed input with a lone surrogate cannot become a 500."""
    assert isinstance(exc, RequestValidationError)
    return SafeJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def on_unicode(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "strings must be valid Unicode text (no lone surrogates)"}, status_code=422)


async def on_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_handlers(app: FastAPI) -> None:
    """Dependency outages that escape a route -> 503 (+Retry-After); anything else -> a JSON 500."""
    for exc_type in outage_exceptions():
        app.add_exception_handler(exc_type, on_outage)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(UnicodeError, on_unicode)
    app.add_exception_handler(Exception, on_error)
