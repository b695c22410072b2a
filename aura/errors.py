"""The one exception root of Aura.

Every error class the project defines derives from ``AuraError`` (and, where callers already catch a
builtin such as ``ValueError``, from that too), so a caller can catch everything Aura raises in one
clause while library errors stay distinct. Library errors are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations


class AuraError(Exception):
    """Root of every exception defined by Aura."""
