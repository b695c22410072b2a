"""FastAPI dependencies: the process's clients, reached through ``Annotated[..., Depends]``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.state import ApiState


def get_state(request: Request) -> ApiState:
    return request.app.state.aura


State = Annotated[ApiState, Depends(get_state)]
