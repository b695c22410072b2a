"""The OpenAPI document is complete: every operation's JSON request body and 2xx answer carry an
example (on the media type, or on the schema they reference), every guarded operation documents
401/403/413/429/503, every operation with inputs documents 422, and every operation whose handler
can answer 404 documents it. The document is walked, so a new route is covered without touching
this file. Building the app and its document opens no connection (the lifespan does not run)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from aura.settings import Settings
from serving.app import create_app

METHODS = ("get", "post", "put", "patch", "delete")
# open on purpose: health probes, metrics, and the campaign open pixel and click redirect (mail clients
# fetch them; the signed token in the path is the credential)
OPEN = {"/v1/health", "/metrics", "/v1/campaigns/track/open/{token}.gif", "/v1/campaigns/track/click/{token}"}


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(Settings().replace(redis_prefix="openapi-doc", topic_prefix="openapi-doc"))


@pytest.fixture(scope="module")
def doc(app: Any) -> dict[str, Any]:
    return app.openapi()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def _has_example(doc: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = _resolve(doc, media.get("schema") or {})
    return bool(schema.get("examples") or schema.get("example") is not None)


def api_routes(app: Any) -> list[tuple[str, APIRoute]]:
    """(full path template, route) of every API route, through the included routers."""
    out = []
    for ctx in iter_route_contexts(app.routes):
        route = getattr(ctx, "original_route", None)
        if isinstance(route, APIRoute):
            out.append((ctx.path_format, route))
    return out


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, item in doc["paths"].items() for m, op in item.items() if m in METHODS]


def test_the_walk_sees_every_route_group(doc):
    tags = {t for _m, _p, op in operations(doc) for t in op.get("tags", [])}
    assert {"system", "profiles", "events", "recommendations"} <= tags
    assert len(operations(doc)) > 40


def test_every_json_body_and_success_answer_has_an_example(doc):
    missing = []
    for method, path, op in operations(doc):
        body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
        if body is not None and not _has_example(doc, body):
            missing.append(f"{method} {path}: request body")
        for status, resp in op.get("responses", {}).items():
            if not status.startswith("2"):
                continue
            for ctype, media in (resp.get("content") or {}).items():
                if not _has_example(doc, media):
                    missing.append(f"{method} {path}: {status} {ctype}")
    assert not missing, "add examples (Field(examples=...), json_schema_extra, openapi_examples or " \
                        "responses={...: {'content': {...: {'example': ...}}}}):\n" + "\n".join(missing)


def test_every_error_answer_is_documented(doc):
    missing = []
    for method, path, op in operations(doc):
        statuses = set(op.get("responses", {}))
        if path not in OPEN and not op.get("security"):
            missing.append(f"{method} {path}: no security requirement")
        needed = set() if path in OPEN else {"401", "403", "413", "429", "503"}
        if op.get("parameters") or op.get("requestBody"):
            needed.add("422")
        missing += [f"{method} {path}: {s}" for s in sorted(needed - statuses)]
        for status in statuses - {"default"}:
            if not status.startswith("2") and not op["responses"][status].get("description"):
                missing.append(f"{method} {path}: {status} has no description")
    assert not missing, "\n".join(missing)


def test_routes_that_can_answer_404_document_it(app, doc):
    """A handler whose source raises 404 (``HTTPException(404, ...)``, ``not_found(...)``) documents it."""
    missing, seen = [], 0
    for path, route in api_routes(app):
        try:
            src = inspect.getsource(route.endpoint)
        except (OSError, TypeError):
            continue
        if "404" not in src and "not_found(" not in src and "_require(" not in src:
            continue
        for method in route.methods - {"HEAD", "OPTIONS"}:
            seen += 1
            op = doc["paths"][path][method.lower()]
            if "404" not in op.get("responses", {}):
                missing.append(f"{method} {path}")
    assert seen > 10  # the walk found the handlers that answer 404
    assert not missing, "\n".join(missing)


def test_error_answers_carry_examples(doc):
    missing = []
    for method, path, op in operations(doc):
        for status, resp in op.get("responses", {}).items():
            if status in ("401", "403", "404", "413", "429", "503"):
                media = (resp.get("content") or {}).get("application/json")
                if media is None or not _has_example(doc, media):
                    missing.append(f"{method} {path}: {status}")
    assert not missing, "\n".join(missing)


def test_the_examples_are_valid_for_the_routes_models(app, doc):
    """Every example of serving/examples.py names a real operation and passes the route's own
    request and response models (typed routes), so examples cannot drift from the code."""
    from pydantic import TypeAdapter

    from serving.examples import EXAMPLES

    ops = {f"{m} {p}" for m, p, _op in operations(doc)}
    assert not set(EXAMPLES) - ops, f"examples for operations that do not exist: {set(EXAMPLES) - ops}"
    checked = 0
    for path, route in api_routes(app):
        for method in route.methods - {"HEAD", "OPTIONS"}:
            ex = EXAMPLES.get(f"{method} {path}", {})
            if "response" in ex and route.response_model is not None:
                TypeAdapter(route.response_model).validate_python(ex["response"])
                checked += 1
            body = route.body_field
            if "request" in ex and body is not None:
                annotation = body.field_info.annotation
                TypeAdapter(annotation).validate_python(ex["request"])
                checked += 1
    assert checked > 30
