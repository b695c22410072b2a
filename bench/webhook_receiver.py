"""A local webhook provider for bench/campaigns.py: accepts every signed POST and logs its arrival.

    .venv/bin/python -m bench.webhook_receiver --port 8765 --log /tmp/hooks.log --secret s

An aiohttp server in its own process (so the receiver is not the benchmark's ceiling). Each request
whose ``X-Aura-Signature`` matches the HMAC of its body is answered 200 and logged as
``<epoch ms>\\t<user id>\\t<Idempotency-Key>``; a bad signature is answered 401 and logged as
``<epoch ms>\\t-\\tbad-signature``. The line is written before the answer, so a message the worker
counts as delivered is in the log.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time

from aiohttp import web


def app(log_path: str, secret: str) -> web.Application:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the server's life, line-buffered
    key = secret.encode()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        want = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        now = int(time.time() * 1000)
        if not hmac.compare_digest(request.headers.get("X-Aura-Signature", ""), want):
            log.write(f"{now}\t-\tbad-signature\n")
            return web.Response(status=401, text="bad signature")
        doc = json.loads(body)
        log.write(f"{now}\t{doc['user_id']}\t{request.headers.get('Idempotency-Key', '')}\n")
        return web.Response(status=200, text="ok")

    a = web.Application(client_max_size=1 << 20)
    a.router.add_post("/hook", hook)
    return a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret", required=True)
    a = ap.parse_args()
    web.run_app(app(a.log, a.secret), host="127.0.0.1", port=a.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
