"""The operator console's built assets at ``/console`` (sources: serving/console/, docs/console.md).

Owns no state: a small ASGI app mounted by ``serving/app.py`` that serves the Vite build in
``serving/console/dist``. Hashed assets (``/console/assets/*``: the file name changes with the
content) are cached for a year and immutable; ``index.html`` is ``no-cache`` so a new build is
picked up at once; any other path under ``/console`` answers ``index.html`` (the single-page app
routes itself). Answers are gzipped for clients that accept it (``console_app``: the bundle is
~1.3 MB raw, ~0.3 MB gzipped; a browser fetches it once per build thanks to the hashed names).
The page holds no data and no key: everything it shows it fetches from the public ``/v1`` API
with the key the operator pastes, so the mount is open, like ``/v1/health``. When the build is
missing the API still runs and ``/console`` says how to build it (``make console``).
A mount, not API routes: it is not part of the OpenAPI document, and the route walks of the auth
and unknown-query tests only cover the ``/v1`` API.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response

CONSOLE_DIST = Path(__file__).resolve().parent / "console" / "dist"
MOUNT = "/console"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# the page loads only its own files and talks only to this origin
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Aura console: not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1>The Aura console is not built</h1>
<p>The API runs without it. Build the console's assets (Node.js and npm are installed from Debian
when missing) and reload this page:</p>
<pre>make console</pre>
<p>It builds <code>serving/console/</code> into <code>serving/console/dist/</code>, which the API serves
here. <code>make run</code> and <code>make test</code> build it when it is missing. See docs/console.md.</p>
</body></html>
"""

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")
mimetypes.add_type("image/svg+xml", ".svg")


class ConsoleApp:
    """Serve ``dist`` under the mount; ``dist`` is looked at per request, so a build made while the
    API runs is served without a restart."""

    def __init__(self, dist: Path = CONSOLE_DIST) -> None:
        self.dist = dist.resolve()

    def response(self, method: str, rel: str) -> Response:
        if method not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed", status_code=405, headers={"Allow": "GET, HEAD"})
        index = self.dist / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=404, headers={"Cache-Control": NO_CACHE})
        rel = rel.lstrip("/")
        if rel and rel != "index.html":
            target = (self.dist / rel).resolve()
            if target.is_relative_to(self.dist) and target.is_file():
                hashed = target.parent.name == "assets"
                return FileResponse(target, headers={"Cache-Control": IMMUTABLE if hashed else NO_CACHE,
                                                     "X-Content-Type-Options": "nosniff"})
            if rel.startswith("assets/"):  # a stale hashed name: a 404, never the page in its place
                return PlainTextResponse("not found", status_code=404, headers={"Cache-Control": NO_CACHE})
        return FileResponse(index, media_type="text/html", headers={
            "Cache-Control": NO_CACHE, "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        rel = path[len(root):] if root and path.startswith(root) else path
        if rel.startswith(MOUNT):  # mounted: Starlette keeps the full path and sets root_path
            rel = rel[len(MOUNT):]
        if rel == "":  # /console -> /console/ so the page's relative URLs resolve under the mount
            await RedirectResponse(f"{MOUNT}/", status_code=307)(scope, receive, send)
            return
        await self.response(scope["method"], rel)(scope, receive, send)


def console_app(dist: Path = CONSOLE_DIST) -> Any:
    """The mounted app: ``ConsoleApp`` behind gzip (level 6: most of level 9's gain, a third of its CPU)."""
    return GZipMiddleware(ConsoleApp(dist), minimum_size=1024, compresslevel=6)
