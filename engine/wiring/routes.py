"""The other domains' routes on the API app (``build_app(extra_routes=...)``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from engine.config import EngineConfig
from engine.privacy import http as privacy_http
from engine.privacy.keys import pseudonym_key
from engine.privacy.service import DataSubjectService
from engine.privacy.store import SubjectStore
from engine.recordings.service import RecordingService
from engine.reports import http as reports_http
from engine.store.pg.pool import PgStore
from engine.webhooks import http as webhooks_http
from engine.webhooks.service import Dispatcher
from engine.webhooks.store import WebhookStore

AddRoutes = Callable[[web.Application], None]


def webhook_routes(store: WebhookStore, dispatcher: Dispatcher) -> AddRoutes:
    def add(app: web.Application) -> None:
        app[webhooks_http.WEBHOOKS] = store
        app[webhooks_http.DISPATCHER] = dispatcher
        webhooks_http.add_routes(app)

    return add


def privacy_routes(
    cfg: EngineConfig, pg: PgStore, data_dir: Path, recordings: RecordingService | None
) -> AddRoutes:
    """Data-subject export and erase (docs/privacy.md). The pseudonym key is loaded (or
    generated) here, at start: a bad key source stops the engine, naming it."""
    service = DataSubjectService(
        # One person's rows in one transaction: more than a single statement's timeout.
        SubjectStore(pg.pool, timeout_s=max(30.0, cfg.calls.storage_timeout_s)),
        pseudonym_key(
            cfg.privacy,
            base=Path(cfg.base_dir),
            data_dir=data_dir,
            instance=cfg.engine.instance,
        ),
        recordings=recordings,
        default_region=cfg.privacy.default_region,
    )

    def add(app: web.Application) -> None:
        privacy_http.add_routes(app, service)

    return add


def report_routes(cfg: EngineConfig, pg: PgStore) -> AddRoutes:
    def add(app: web.Application) -> None:
        app[reports_http.REPORTS] = reports_http.ReportsDeps(
            pg.pool, timeout_s=max(cfg.calls.storage_timeout_s, 10.0)
        )
        reports_http.add_routes(app)

    return add
