"""``GET /v1/reports/{queues|agents|campaigns|trunks}`` and ``GET /v1/reports/experiments/...``
(docs/reports.md). JSON by default; CSV with ``format=csv`` or ``Accept: text/csv``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from engine.reports import ab, experiments, query


@dataclass(frozen=True, slots=True)
class ReportsDeps:
    pool: asyncpg.Pool
    timeout_s: float = 10.0


REPORTS = web.AppKey("reports", ReportsDeps)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handler(kind: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        deps = request.app[REPORTS]
        params = query.parse_params(request.query, request.headers.get("Accept", ""))
        doc = await query.report(deps.pool, kind, params, timeout_s=deps.timeout_s)
        if params.csv:
            return web.Response(
                text=query.to_csv(doc),
                content_type="text/csv",
                charset="utf-8",
                headers={"Content-Disposition": f'attachment; filename="{kind}.csv"'},
            )
        return web.json_response(doc)

    return handle


def _experiment(kind: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        deps = request.app[REPORTS]
        exp = experiments.parse_experiment(kind, request.match_info["name"], request.query)
        found = await experiments.samples(deps.pool, exp, timeout_s=max(deps.timeout_s, 30.0))
        result = ab.analyse(found, exp.control)
        return web.json_response(
            {
                "kind": exp.kind,
                "name": exp.name,
                "from": exp.start.isoformat(),
                "to": exp.end.isoformat(),
                "goal": exp.goal,
                "dispositions": list(exp.dispositions) if exp.goal == "disposition" else [],
                **result,
            }
        )

    return handle


def add_routes(app: web.Application) -> None:
    for kind in query.KINDS:
        app.router.add_get(f"/v1/reports/{kind}", _handler(kind))
    for kind in experiments.EXPERIMENT_KINDS:
        app.router.add_get(f"/v1/reports/experiments/{kind}/{{name}}", _experiment(kind))
