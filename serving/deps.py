"""FastAPI dependencies: the process's clients and the callers' scopes, via ``Annotated[..., Depends]``.

Routers use ``State`` for the clients and, when a route needs a scope other than its group's
default (GET: ``read``; writes: the group's write scope set in ``serving/app.py``), declare it:

    @router.post("/impressions", dependencies=[require_scope("events")])
    async def track(state: State, principal: EventsKey) -> ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.security import ADMIN, EVENTS, READ, Principal, guard, require_scope, scoped
from serving.state import ApiState

__all__ = ["ADMIN", "EVENTS", "READ", "AdminKey", "EventsKey", "Principal", "ReadKey", "State", "guard",
           "require_scope", "scoped"]


async def get_state(request: Request) -> ApiState:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread (a thread
    # hand-off on every request, ~6% of a profile read's CPU under load)
    return request.app.state.aura


State = Annotated[ApiState, Depends(get_state)]
ReadKey = Annotated[Principal, require_scope(READ)]
EventsKey = Annotated[Principal, require_scope(EVENTS)]
AdminKey = Annotated[Principal, require_scope(ADMIN)]
