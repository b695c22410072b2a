"""The local stack's development mail server: a real SMTP server (aiosmtpd) that stores every
message it accepts in a Maildir under ``<home>/data/mail/Maildir`` (``aura mail list`` and
``GET /v1/campaigns/mail`` list it).

Like the mailbox providers that drop a second copy of a Message-ID (Gmail does), it keeps one copy
per Message-ID: a connector that resends after a crash between the server's 250 and its own send
record (the one window SMTP leaves open) does not show as two messages. Every accepted transaction,
duplicate or not, is appended to ``accepted.log`` (time, Message-ID, recipients, ``new``/``duplicate``)
so tests count what really reached the server.

Run: ``python -m infra.mailsink --host 127.0.0.1 --port 2525 --maildir <dir>`` (infra/services.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import mailbox
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from aura.state.maildir import message_key

log = logging.getLogger("aura.mailsink")


class MaildirHandler:
    """aiosmtpd handler: one Maildir file per Message-ID, every transaction logged."""

    def __init__(self, root: Path) -> None:
        for sub in ("tmp", "new", "cur"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(root, create=True)
        self.log_path = root / "accepted.log"
        self.seen: set[str] = set()
        for key in self.maildir.iterkeys():
            with self.maildir.get_file(key) as f:
                mid = message_key(f.read())
            if mid:
                self.seen.add(mid)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        mid = message_key(raw)
        duplicate = bool(mid) and mid in self.seen
        if not duplicate:
            self.maildir.add(raw)
            if mid:
                self.seen.add(mid)
        with open(self.log_path, "a") as f:
            f.write(f"{int(time.time() * 1000)}\t{mid}\t{','.join(envelope.rcpt_tos)}\t"
                    f"{'duplicate' if duplicate else 'new'}\n")
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, root: Path) -> None:
    handler = MaildirHandler(root)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="aura-mailsink"), host, port)
    log.warning("mail sink listening on %s:%d, Maildir %s", host, port, root)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--maildir", type=Path, required=True)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(a.host, a.port, a.maildir))


if __name__ == "__main__":
    main()
