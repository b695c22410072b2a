"""Shared response shapes, so every router answers errors the same way: ``{"detail": ...}``.

Use ``ErrorBody`` in ``responses=`` of a route, ``not_found``/``unavailable`` to raise, and
``SECURED_RESPONSES`` (added to every guarded route group by ``serving/app.py``) documents the
auth, rate-limit, size and outage answers in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from serving.breakers import DependencyUnavailable


class ErrorBody(BaseModel):
    """Every error the API sends: a human-readable ``detail`` (422: a list of field errors)."""

    detail: str | list[dict[str, Any]] = Field(description="What went wrong")

    model_config = {"json_schema_extra": {"examples": [{"detail": "no activity for user 'u1'"}]}}


def _err(description: str, example: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": ErrorBody, "description": description,
                           "content": {"application/json": {"example": {"detail": example}}}}
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
DEGRADED = {"X-Aura-Degraded": {"description": "Which dependency is down (e.g. `redis-down`, `cassandra-down`)",
                                "schema": {"type": "string"}}}

SECURED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _err("Missing, malformed, unknown or revoked API key", "missing or invalid API key: send X-API-Key or "
              "Authorization: Bearer", {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    403: _err("The API key lacks the scope this route needs", "this API key lacks the 'admin' scope"),
    413: _err("Request body larger than the configured limit", "request body larger than 1048576 bytes"),
    429: _err("The key's rate limit is exceeded", "rate limit of 200 requests/s (burst 400) exceeded for this key",
              RETRY_AFTER),
    503: _err("A dependency (Redis, Cassandra, Kafka) is unavailable; retry after Retry-After",
              "redis+cassandra unavailable; retry shortly", {**RETRY_AFTER, **DEGRADED}),
}


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} not found")


def unavailable(dependency: str, detail: str | None = None) -> DependencyUnavailable:
    """Raise this when a route cannot answer without ``dependency``: the handler makes it a 503."""
    return DependencyUnavailable(dependency, detail)


def document_error_contract(app: FastAPI) -> None:
    """Make the OpenAPI document say what the API sends on 422: FastAPI's field errors, or a plain
    ``detail`` string when a route refuses a well-formed request (``HTTPException(422, "why")``)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = original()
        hve = doc.get("components", {}).get("schemas", {}).get("HTTPValidationError")
        if hve is not None and "detail" in hve.get("properties", {}):
            detail = hve["properties"]["detail"]
            hve["properties"]["detail"] = {"title": "Detail", "anyOf": [
                {k: v for k, v in detail.items() if k != "title"}, {"type": "string"}]}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
