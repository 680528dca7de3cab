"""``GET /v1/docs``: the API reference as one self-contained HTML page,
rendered from the same OpenAPI document (no CDN, works offline)."""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web


def render(doc: dict[str, Any]) -> str:
    info = doc["info"]
    parts = [
        "<!doctype html><meta charset=utf-8>",
        f"<title>{html.escape(info['title'])}</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;"
        "overflow:auto}h3{margin-bottom:.2rem}.m{font-weight:bold;text-transform:uppercase}</style>",
        f"<h1>{html.escape(info['title'])} <small>{html.escape(info['version'])}</small></h1>",
        f"<p>{html.escape(info.get('description', ''))}</p>",
        '<p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a> (needs a token).</p>',
        "<h2>Endpoints</h2>",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            statuses = ", ".join(sorted(op.get("responses", {})))
            parts.append(
                f"<h3><span class=m>{method}</span> <code>{html.escape(path)}</code></h3>"
                f"<p>{html.escape(op.get('summary', ''))}</p>"
                + (f"<p>{html.escape(op['description'])}</p>" if "description" in op else "")
                + f"<p>Responses: {html.escape(statuses)}</p>"
            )
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        body = html.escape(json.dumps(schema, indent=2))
        parts.append(f"<h3 id={html.escape(name)}>{html.escape(name)}</h3><pre>{body}</pre>")
    return "\n".join(parts)


async def docs(request: web.Request) -> web.Response:
    from engine.api.app import openapi_document

    return web.Response(text=render(openapi_document()), content_type="text/html")
