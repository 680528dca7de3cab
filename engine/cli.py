"""Command line: ``python -m engine`` or the ``telephony-engine`` console script."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.config import load_config
from engine.core.errors import ConfigError, StartupError
from engine.ivr.queueing import QueueCatalog
from engine.store.pg.pool import PgStore

DEFAULT_CONFIG = "telephony-config/engine.toml"


def _check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.path)
    except ConfigError as err:
        print(f"config invalid: {len(err.problems)} problem(s)", file=sys.stderr)
        for line in err.lines():
            print(f"  {line}", file=sys.stderr)
        return 2
    kinds = ", ".join(f"{s.name} ({s.kind})" for s in cfg.switches)
    print(f"{args.path}: OK — switches: {kinds}; API on {cfg.api.bind}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from engine.app import run_forever
    from engine.telemetry.logging import setup_logging

    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print("refusing to start: configuration is invalid", file=sys.stderr)
        for line in err.lines():
            print(f"  {line}", file=sys.stderr)
        return 2
    setup_logging(cfg.logging.level, cfg.logging.format)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run_forever(cfg, Path(args.config)))
    except StartupError as err:
        print(f"engine could not start: {err}", file=sys.stderr)
        return 1
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop unless ``ENGINE_EVENT_LOOP=asyncio``: the engine is a control plane
    whose CPU goes mostly to the event loop's own bookkeeping and socket I/O
    (docs/bench-cpu.md), which uvloop does in C."""
    if os.environ.get("ENGINE_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def _pg_store(config: str) -> PgStore:
    """The engine's PostgreSQL for CLI tools: ENGINE_PG_DSN, else the config's storage section
    (its embedded server under data_dir when no DSN is configured)."""
    if not Path(config).exists() and (dsn := os.environ.get("ENGINE_PG_DSN")):
        return PgStore(dsn, Path("."), min_size=1, max_size=2)
    cfg = load_config(config)
    dsn = cfg.storage.postgres_dsn.get_secret_value() or None
    return PgStore(dsn, cfg.resolve(cfg.engine.data_dir) / "postgres", min_size=1, max_size=2)


def ivr_catalog(path: Path) -> QueueCatalog | None:
    """Queue and intent names from engine.toml, so the IVR tester checks `queue`
    steps as the engine would (None when the file does not exist)."""
    if not path.exists():
        return None
    cfg = load_config(str(path))
    return QueueCatalog(queues=frozenset(q.name for q in cfg.queues), intents=dict(cfg.acd.intents))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engine",
        description="The telephony control engine (README.md): the daemon and its tools. "
        "Each command's --help says more.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the engine daemon")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument(
        "path", nargs="?", default=DEFAULT_CONFIG, help=f"engine.toml (default: {DEFAULT_CONFIG})"
    )
    check.set_defaults(func=_check_config)
    from engine.doctor.run import add_parser as add_doctor_parser

    add_doctor_parser(sub.add_parser, DEFAULT_CONFIG)  # docs/production.md "Doctor"
    from engine.campaigns.cli import add_parsers as add_campaign_parsers

    add_campaign_parsers(sub, _pg_store)  # contacts import, dnc import
    from engine.ivr.cli import add_parsers as add_ivr_parsers

    add_ivr_parsers(sub, ivr_catalog)  # ivr check / test / tests (docs/ivr.md "Testing flows")
    from engine.recordings.cli import add_parsers as add_recording_parsers

    add_recording_parsers(sub, _pg_store, load_config)  # recordings new-kek, rewrap
    from engine.auth.cli import add_parsers as add_auth_parsers

    add_auth_parsers(sub, _pg_store)  # audit verify, auth matrix
    from engine.reports.cli import add_parsers as add_report_parsers

    add_report_parsers(sub, _pg_store, load_config)  # reports rebuild / show / ab
    try:
        from engine.dialer.cli import add_simulate_parser
    except ImportError:  # pragma: no cover - the dialer package is optional at import time
        pass
    else:
        simulate = add_simulate_parser(sub)
        from engine.acd.sim.cli import extend_simulate_parser

        # Inbound scenarios ("kind": "inbound") go to the routing simulator; the rest unchanged.
        extend_simulate_parser(simulate, simulate.get_default("func"))
        from engine.campaigns.simulate_cli import extend_simulate_parser as extend_campaign

        # --campaign NAME: a dry run of a configured campaign (docs/campaigns.md).
        extend_campaign(simulate, simulate.get_default("func"), _pg_store)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
