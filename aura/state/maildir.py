"""The development mail store: a Maildir that the local mail server (infra/mailsink.py) writes, one
file per Message-ID, and that ``aura mail list`` and ``GET /v1/campaigns/mail`` read.

Plain functions over the files (the standard library's ``email`` parses them); no Redis or Cassandra state.
"""

from __future__ import annotations

import email
from email import policy
from pathlib import Path
from typing import Any

from aura.settings import Settings


def root(s: Settings) -> Path:
    """The Maildir of the local mail server (under the stack's data directory)."""
    return s.home / "data" / "mail" / "Maildir"


def message_key(raw: bytes) -> str:
    """The Message-ID of a raw message without angle brackets ("" when it has none)."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    return (msg.get("Message-ID") or "").strip().strip("<>")


def list_messages(root: Path, limit: int = 50, to: str | None = None) -> list[dict[str, Any]]:
    """The newest messages of the Maildir (headers and a text preview), newest first. With ``to``,
    a file whose bytes do not contain the address is skipped before it is parsed (a development
    Maildir holds tens of thousands of messages; parsing each is what a listing would cost)."""
    if not root.exists():
        return []
    needle = to.encode() if to else None
    out = []
    for sub in ("new", "cur"):
        folder = Path(root) / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                raw = path.read_bytes()
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # moved from new/ to cur/ meanwhile
                continue
            if needle is not None and needle not in raw:
                continue
            msg = email.message_from_bytes(raw, policy=policy.compat32)
            if to and to not in (msg.get("To") or ""):
                continue
            body = msg.get_payload(decode=True) if not msg.is_multipart() else None
            if body is None and msg.is_multipart():
                part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
                body = part.get_payload(decode=True) if part is not None else b""
            out.append({"key": path.name.split(":", 1)[0], "message_id": (msg.get("Message-ID") or "").strip("<>"),
                        "to": msg.get("To"), "from": msg.get("From"), "subject": msg.get("Subject"),
                        "date": msg.get("Date"), "mtime": mtime, "text": (body or b"").decode(errors="replace")[:2000]})
    out.sort(key=lambda m: -m["mtime"])
    return out[:limit]
