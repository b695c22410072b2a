"""The one exception root of Aura.

Every error class the project defines derives from ``AuraError`` (and, where callers already catch a
builtin such as ``ValueError``, from that too), so a caller can catch everything Aura raises in one
clause while library errors stay distinct. Library errors are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


class AuraError(Exception):
    """Root of every exception defined by Aura."""


class DefinitionError(AuraError, ValueError):
    """A configuration document (rule, experiment, bandit, campaign, ...) that cannot be accepted;
    ``errors`` lists ``{"loc": [...], "msg": ...}`` as FastAPI's 422 details do."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors
