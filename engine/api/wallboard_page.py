"""``GET /wallboard``: the supervisors' live page (docs/wallboard.md), and its files.

Plain HTML, CSS and JavaScript shipped in the package (``engine/api/wallboard/``): no CDN, no
build step, so it works offline like the API reference. The page itself is public and holds no
data; everything it shows comes from the API with the supervisor's token (typed into the page,
kept in the tab's ``sessionStorage``, never in a URL) and from the event WebSocket, opened with
a single-use ticket (``POST /v1/events/ticket``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from engine.core.errors import NotFound

# The files of the page; nothing else under the directory is served.
ASSETS = {
    "wallboard.js": "text/javascript",
    "wallboard.css": "text/css",
}
# The page must not be framed by another site (clickjacking of the control buttons), and
# loads nothing from anywhere but the engine.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _file(name: str) -> bytes:
    return resources.files("engine.api").joinpath("wallboard", name).read_bytes()


async def page(request: web.Request) -> web.Response:
    return web.Response(
        body=_file("index.html"),
        content_type="text/html",
        charset="utf-8",
        headers=HEADERS,
    )


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise NotFound(
            f"no wallboard file {name!r}",
            error_id="not-found",
            details={"known": list(ASSETS)},
        )
    return web.Response(
        body=_file(name),
        content_type=ASSETS[name],
        charset="utf-8",
        headers=HEADERS,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/wallboard", page)
    app.router.add_get("/wallboard/{asset}", asset)
