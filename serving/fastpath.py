"""The ASGI fast path: the hottest GET routes answered without FastAPI's routing, dependency
injection and exception middleware. Owns no state beyond its route table, built once
from the app's own routes on the first request.

A pure-ASGI middleware placed inside the edge middleware (metrics, 413) and CORS, so both still
see every request. For a GET whose path matches one of the hot routes (and no route the app
would try first), it runs the route's own pieces directly:

1. auth and rate limit: the token as the route's security dependencies read it, the scope the
   route's group guard requires (``serving/security.py``: ``presented_token``, ``required_scope``,
   ``authorize``); then the group's refusal of unknown query parameters (``serving/query.py``);
2. path and query parameters validated by FastAPI's own ``request_params_to_args`` against the
   route's declared parameters (so a 422 has FastAPI's shape, field for field);
3. the route's endpoint function itself, called with the state and a sub-response (degraded
   answers set ``X-Aura-Degraded`` on it, as under FastAPI);
4. the return value serialized by FastAPI's ``serialize_response`` with the route's response
   model (byte-identical JSON);
5. any exception answered by the app's own exception handlers (401/403/429/503/422/500 bodies and
   headers unchanged).

Everything else (other paths and methods, routes with dependencies the fast path does not know,
``dependency_overrides`` set, a ``root_path``) falls through to the FastAPI app unchanged; the
routes stay declared there, so the OpenAPI document does not change.
``tests/integration/test_fastpath.py`` proves the answers equal to FastAPI's.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts, serialize_response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from serving.deps import get_state
from serving.query import check as check_query
from serving.routes import profiles
from serving.routes import recommendations as recs
from serving.security import authorize, presented_token, required_scope
from serving.state import ApiState

log = logging.getLogger(__name__)
QUERY_MEMO_MAX = 1024  # distinct query strings remembered per route (then forgotten all at once)


def hot_endpoints() -> list[Callable[..., Any]]:
    """The storefront reads served by the fast path (by endpoint function, so prefixes may move)."""
    return [profiles.get_activity, profiles.get_profile, recs.for_user, recs.similar, recs.also_bought,
            recs.trending]


@dataclass
class HotRoute:
    """One route the fast path answers, and what it needs to answer it as FastAPI would."""

    route: Any  # the route as the app matches it (prefixes and the group's guard applied)
    original: APIRoute  # the router's own route object (what FastAPI puts in ``scope["route"]``)
    prefix: str  # the path up to the first parameter: a cheap pre-check
    earlier: list[Any]  # path regexes of GET routes the app tries first that could match the same path
    earlier_other: list[Any]  # routes tried first that are not plain routes (mounts...): asked as FastAPI would
    required: str | None  # the scope the route's guard requires (None: open route)
    state_params: list[str]  # endpoint parameters that receive ``ApiState``
    dump_json: bool
    response_class: type[Response]
    query_memo: dict[bytes, dict[str, Any]] = field(default_factory=dict)  # query string -> validated values

    def query_args(self, request: Request) -> tuple[dict[str, Any], list[Any]]:
        """FastAPI's ``request_params_to_args`` over the query parameters, remembered per query string
        when it validated to immutable values only (storefronts send a handful of distinct query
        strings, e.g. ``limit=10``; a path parameter such as the user id is validated every time)."""
        raw = request.scope.get("query_string", b"")
        got = self.query_memo.get(raw)
        if got is not None:
            return dict(got), []
        values, errors = request_params_to_args(self.route.dependant.query_params, request.query_params)
        if not errors and all(v is None or isinstance(v, str | int | float | bool) for v in values.values()):
            if len(self.query_memo) >= QUERY_MEMO_MAX:
                self.query_memo.clear()
            self.query_memo[raw] = dict(values)
        return values, errors

    def shadowed(self, scope: dict[str, Any], path: str) -> bool:
        return (any(regex.match(path) for regex in self.earlier)
                or any(r.matches(scope)[0] is not Match.NONE for r in self.earlier_other))


def simple(route: Any) -> list[str] | None:
    """The names of the ``State`` parameters when the route's dependencies are only its group guard
    (or one ``require_scope``) and ``State``, with path/query parameters; else None (not served here)."""
    d = route.dependant
    if d is None or not inspect.iscoroutinefunction(route.endpoint) or (
            d.header_params or d.cookie_params or d.body_params or d.request_param_name or d.websocket_param_name
            or d.http_connection_param_name or d.background_tasks_param_name or d.security_scopes_param_name):
        return None
    names, auth = [], 0
    for sub in d.dependencies:
        call = sub.call
        if call is get_state and sub.name and not sub.dependencies:
            names.append(sub.name)
        elif getattr(call, "__aura_guard__", None) is not None or getattr(call, "__aura_scope__", None) is not None:
            auth += 1
        elif getattr(call, "__aura_query_check__", False):
            continue  # run by ``answer`` itself (serving/query.py)
        else:
            return None
    return names if auth <= 1 else None


def static_prefix(path: str) -> str:
    return path.split("{", 1)[0]


def build_table(app: Any, endpoints: Sequence[Callable[..., Any]]) -> list[HotRoute]:
    """The hot routes as the app matches them (included routers flattened, in matching order)."""
    contexts = list(iter_route_contexts(app.routes))
    table = []
    for pos, ctx in enumerate(contexts):
        original = ctx.original_route
        if not (isinstance(original, APIRoute) and ctx.endpoint in endpoints and "GET" in (ctx.methods or ())):
            continue
        route = getattr(ctx, "_effective_route", ctx)  # the resolved route, without the per-attribute proxy
        state_params = simple(route)
        if state_params is None:
            log.warning("fast path: %s has dependencies it does not know; left to FastAPI", ctx.path)
            continue
        prefix = static_prefix(route.path)
        earlier, other = [], []
        for e in contexts[:pos]:
            regex, methods, path = getattr(e, "path_regex", None), getattr(e, "methods", None), getattr(e, "path", None)
            if regex is None or methods is None or path is None:
                other.append(e)
            elif "GET" in methods and (prefix.startswith(fixed := static_prefix(path)) or fixed.startswith(prefix)):
                earlier.append(regex)  # (a route whose fixed start differs from this one's never matches its paths)
        rc = route.response_class
        table.append(HotRoute(
            route=route, original=original, prefix=prefix, earlier=earlier, earlier_other=other,
            required=required_scope(ctx, "GET"), state_params=state_params,
            dump_json=route.response_field is not None and isinstance(rc, DefaultPlaceholder),
            response_class=rc.value if isinstance(rc, DefaultPlaceholder) else rc))
    return table


def handler_for(handlers: dict[Any, Any], exc: BaseException) -> tuple[Any, bool]:
    """The app's handler for ``exc``, as Starlette looks it up (status code first for HTTP errors);
    the flag says it is the catch-all 500 handler (Starlette then re-raises after answering)."""
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code], False
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls], cls is Exception
    return handlers.get(500), True


class FastPath:
    """Pure-ASGI middleware answering the hot GET routes (see the module docstring)."""

    def __init__(self, app: Any, endpoints: Sequence[Callable[..., Any]] | None = None) -> None:
        self.app = app
        self.endpoints = list(endpoints) if endpoints is not None else hot_endpoints()
        self.table: list[HotRoute] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        fastapi_app = scope["app"]
        table = self.table
        if table is None:
            table = self.table = build_table(fastapi_app, self.endpoints)
        path = scope["path"]
        for hot in table:
            if path.startswith(hot.prefix):
                m = hot.route.path_regex.match(path)
                if m is not None:
                    break
        else:
            await self.app(scope, receive, send)
            return
        if fastapi_app.dependency_overrides or hot.shadowed(scope, path):
            await self.app(scope, receive, send)
            return
        route = hot.route
        scope["route"] = hot.original  # as FastAPI's routing leaves them (serving/metrics.route_label)
        scope.setdefault("fastapi", {})["effective_route_context"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = path_params = {k: route.param_convertors[k].convert(v)
                                              for k, v in m.groupdict().items()}
        request = Request(scope, receive)
        try:
            response = await self.answer(hot, request, fastapi_app.state.aura, path_params)
        except Exception as exc:
            handler, catch_all = handler_for(fastapi_app.exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            await response(scope, receive, send)
            if catch_all:
                raise  # as Starlette's ServerErrorMiddleware does after its 500
            return
        await response(scope, receive, send)

    @staticmethod
    async def answer(hot: HotRoute, request: Request, state: ApiState, path_params: dict[str, Any]) -> Response:
        """What the route's FastAPI handler answers, in the same order: auth (the guard is the first
        dependency), unknown query parameters (the group's second), then parameter validation, then
        the endpoint and its response model."""
        route = hot.route
        if hot.required is not None:
            await authorize(state, request.scope, hot.required, await presented_token(request))
        raw_query = request.scope.get("query_string")
        if raw_query and raw_query not in hot.query_memo:  # a remembered query string was checked already
            check_query(route, request.query_params.keys())
        d = route.dependant
        values, errors = request_params_to_args(d.path_params, path_params)
        if d.query_params:
            query_values, query_errors = hot.query_args(request)
            errors += query_errors
            values.update(query_values)
        if errors:
            raise RequestValidationError(errors, body=None)
        sub = Response()
        del sub.headers["content-length"]
        sub.status_code = None  # type: ignore[assignment]
        for name in hot.state_params:
            values[name] = state
        if d.response_param_name:
            values[d.response_param_name] = sub
        raw = await route.endpoint(**values)
        if isinstance(raw, Response):
            return raw
        status = sub.status_code or route.status_code
        content = await serialize_response(
            field=route.response_field, response_content=raw, include=route.response_model_include,
            exclude=route.response_model_exclude, by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none, is_coroutine=True, dump_json=hot.dump_json)
        args = {"status_code": status} if status else {}
        if hot.dump_json:
            response = Response(content=content, media_type="application/json", **args)
        else:
            response = hot.response_class(content, **args)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        response.headers.raw.extend(sub.headers.raw)
        return response
