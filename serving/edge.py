"""The request gate in front of every route that takes a body: authenticate first, then decode the
body strictly, then let the app parse it.

A pure-ASGI middleware (inside the edge metrics and CORS, outside the fast path). For a request
whose method carries a body (POST, PUT, PATCH, DELETE):

1. the caller is authenticated before one byte of the body is read (a bad key is a 401 whatever
   the body; a missing one too), and the principal is left in the ASGI scope where the route
   group's guard (``serving/security.py``) finds it and only checks the scope;
2. a JSON body is decoded by ``schemas.validation.strict_loads``: ``NaN``/``Infinity`` literals,
   numbers beyond the double range, lone surrogate escapes, invalid UTF-8 and nesting deeper than
   1,024 are a 422 naming what and where, before any route sees them; so no route can store or echo
   a value that JSON allows but the system cannot encode (the cost: one orjson decode more per body,
   the route decodes it again);
3. the buffered body is handed to the app unchanged (the route's pydantic model then applies the
   field bounds of ``schemas/validation.py``).

Open routes (``/v1/health``, ``/metrics`` when public, the docs) take no body, so every request
with a body is authenticated. The ingest routes read and decode their bodies themselves with the
same strict decoder (``serving/ingest.py``: size limit while reading, counted outcomes), so their
bodies are authenticated here and passed on unread.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException

from schemas.validation import InvalidValue, strict_loads
from serving.handlers import outage_exceptions, unavailable_response
from serving.security import PRINCIPAL_SCOPE_KEY, authenticate_scope

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _json_content(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            v = value.lower()
            return b"json" in v or v.startswith(b"text/plain")
    return True  # FastAPI parses a body without a content type as JSON too


async def _send(send: Any, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    body = orjson.dumps(payload)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyGate:
    """Authenticate before reading a body; refuse a body the system cannot hold with a 422."""

    def __init__(self, app: Any, self_parsing: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.outages = outage_exceptions()
        self.self_parsing = self_parsing  # paths whose route decodes the body strictly itself (ingest)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        state = getattr(scope["app"].state, "aura", None)
        if state is not None and PRINCIPAL_SCOPE_KEY not in scope:
            try:
                await authenticate_scope(state, scope)
            except HTTPException as exc:
                await _send(send, exc.status_code, {"detail": exc.detail}, exc.headers)
                return
            except self.outages as exc:
                response = unavailable_response(exc)
                await response(scope, receive, send)
                return
        if scope["path"] in self.self_parsing:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect (or the edge's 413 cut): let the app see it
                await self.app(scope, _replay(b"".join(chunks), receive, message), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _json_content(scope["headers"]):
            try:
                strict_loads(body)
            except InvalidValue as exc:
                await _send(send, 422, {"detail": exc.detail()})
                return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Any, last: dict[str, Any] | None = None) -> Any:
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            if last is not None and not body:
                return last
            return {"type": "http.request", "body": body, "more_body": last is not None}
        if last is not None:
            return last
        return await receive()

    return replayed
