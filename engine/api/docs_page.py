"""``GET /v1/docs``: the interactive API reference (Swagger UI), served by the
engine itself from the ``openapi-ui-bundles`` package, so it works offline
and behind firewalls (no CDN).

The page loads ``/v1/openapi.json``, which is public like this page; the
"Authorize" button takes a bearer token for "Try it out".
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

from engine.core.errors import NotFound

# The files of the Swagger UI distribution the page uses; nothing else under
# the package directory is served.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Telephony engine control API</title>
<link rel="stylesheet" href="/v1/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/v1/docs/favicon-32x32.png">
<style>body{margin:0}</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="/v1/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis],
  showExtensions: true,
  showCommonExtensions: true,
  persistAuthorization: false
});
</script>
</body>
</html>
"""


def _vendor() -> Traversable:
    return resources.files("openapi_ui_bundles").joinpath("swagger_ui", "vendor")


@cache
def _asset(name: str) -> bytes:
    return _vendor().joinpath(name).read_bytes()


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise NotFound(
            f"no documentation asset {name!r}",
            error_id="not-found",
            details={"known": list(ASSETS)},
        )
    return web.Response(
        body=_asset(name),
        content_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/docs", docs)
    app.router.add_get("/v1/docs/{asset}", asset)
