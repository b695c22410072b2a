"""Unknown query parameters are refused: every route group (``serving/app.py``) carries the
``known_query`` dependency, and the fast path (``serving/fastpath.py``) runs the same check, so a
misspelt parameter (``?limt=5``, ``?categroy=shoes``) is a 422 naming it instead of being silently
ignored and answered as if it had not been sent.

The parameters a route knows are the query parameters of its whole dependency tree (the endpoint's
own, a shared dependency's such as the analytics time window, and the fields of a query-parameter
model), by their aliases; worked out once per route and remembered. The 422 has FastAPI's shape
(``{"detail": [{"type", "loc", "msg"}]}``) and never echoes the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

# id(route) -> (the route, the query parameter names it declares). Routes are not hashable; the entry
# holds the route itself so that its id is never recycled for another route while remembered.
_known: dict[int, tuple[Any, frozenset[str]]] = {}


def known_names(route: Any) -> frozenset[str]:
    """The query parameter names ``route`` declares anywhere in its dependency tree (remembered)."""
    hit = _known.get(id(route))
    if hit is not None and hit[0] is route:
        return hit[1]
    out: set[str] = set()
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        pending += dependant.dependencies
        for param in dependant.query_params:
            annotation = getattr(param.field_info, "annotation", None)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):  # a query model
                out.update(f.alias or n for n, f in annotation.model_fields.items())
            else:
                out.add(param.alias)
    names = frozenset(out)
    _known[id(route)] = (route, names)
    return names


def unknown_errors(names: Iterable[str], known: frozenset[str]) -> list[dict[str, Any]]:
    """One FastAPI-shaped error per unknown parameter name (each named once, in the order sent); pure."""
    allowed = ", ".join(sorted(known)) or "none"
    return [{"type": "extra_forbidden", "loc": ["query", name],
             "msg": f"unknown query parameter {name!r} (this route takes: {allowed})"}
            for name in dict.fromkeys(names) if name not in known]


def route_of(scope: dict[str, Any]) -> Any:
    """The route FastAPI is running for ``scope``, with the dependencies of its group applied."""
    ctx = scope.get("fastapi", {}).get("effective_route_context")
    if ctx is not None:
        return getattr(ctx, "_effective_route", ctx)
    return scope.get("route")


def check(route: Any, query_names: Iterable[str]) -> None:
    """Raise the 422 (``RequestValidationError``) when a query parameter is unknown to ``route``."""
    errors = unknown_errors(query_names, known_names(route))
    if errors:
        raise RequestValidationError(errors, body=None)


async def known_query(request: Request) -> None:
    # async on purpose (serving/deps.py: a plain def runs in a worker thread)
    if request.scope.get("query_string"):
        check(route_of(request.scope), request.query_params.keys())


known_query.__aura_query_check__ = True  # type: ignore[attr-defined]  # the fast path runs it itself
KNOWN_QUERY = Depends(known_query)
