"""``python -m engine reports rebuild|show|ab`` (docs/reports.md).

- ``rebuild --from T --to T``: recompute the interval tables over a range from the raw rows
  (after a change of thresholds, or to check the incremental fill);
- ``show KIND --from T --to T [--interval 1h] [--csv]``: a report, as the API gives it;
- ``ab splits|queues NAME --from T --to T [--goal answered|disposition]``: A/B results.

Exit codes: 0 done; 2 bad arguments or config; 4 PostgreSQL failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError, EngineError
from engine.reports import ab, experiments, query
from engine.reports.fill import FillSettings, rebuild
from engine.store.errors import StoreError
from engine.store.pg.pool import PgStore

DEFAULT_CONFIG = "telephony-config/engine.toml"


def add_parsers(
    sub: Any, pg_store: Callable[[str], PgStore], load_config: Callable[[str], Any]
) -> None:
    rep = sub.add_parser("reports", help="KPI reports: rebuild intervals, show, A/B results")
    rsub = rep.add_subparsers(dest="reports_command", required=True)
    rb = rsub.add_parser("rebuild", help="recompute the interval tables over a range")
    _range(rb)
    rb.set_defaults(func=lambda a: _main(a, pg_store, load_config, _rebuild))
    show = rsub.add_parser("show", help="print a report (JSON, or CSV with --csv)")
    show.add_argument("kind", choices=query.KINDS)
    _range(show)
    show.add_argument("--interval", default="1h", choices=list(query.INTERVALS))
    show.add_argument("--csv", action="store_true")
    show.set_defaults(func=lambda a: _main(a, pg_store, load_config, _show))
    abp = rsub.add_parser("ab", help="A/B results of an IVR split or a queue's strategies")
    abp.add_argument("kind", choices=experiments.EXPERIMENT_KINDS)
    abp.add_argument("name")
    _range(abp)
    abp.add_argument("--goal", default="answered", choices=experiments.GOALS)
    abp.add_argument("--dispositions", default="sale")
    abp.add_argument("--control")
    abp.add_argument("--json", action="store_true")
    abp.set_defaults(func=lambda a: _main(a, pg_store, load_config, _ab))


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", required=True, help="ISO 8601 with a time zone")
    p.add_argument("--to", dest="end", required=True, help="ISO 8601 with a time zone")
    p.add_argument("--config", default=DEFAULT_CONFIG)


def _settings(args: argparse.Namespace, load_config: Callable[[str], Any]) -> FillSettings:
    if not Path(args.config).exists():
        return FillSettings()
    cfg = load_config(args.config)
    sections: Any = cfg.reports
    return sections.settings({q.name: q.service_level_s for q in cfg.queues})  # type: ignore[no-any-return]


Action = Callable[[argparse.Namespace, PgStore, FillSettings], Any]


def _main(
    args: argparse.Namespace,
    pg_store: Callable[[str], PgStore],
    load_config: Callable[[str], Any],
    action: Action,
) -> int:
    try:
        settings = _settings(args, load_config)
        store = pg_store(args.config)
    except ConfigError as err:
        print(f"engine reports: {err}", file=sys.stderr)
        return 2

    async def go() -> int:
        async with store:
            await action(args, store, settings)
        return 0

    try:
        return asyncio.run(go())
    except StoreError as err:
        print(f"engine reports: PostgreSQL: {err}", file=sys.stderr)
        return 4
    except EngineError as err:
        print(f"engine reports: {err}", file=sys.stderr)
        return 2


async def _rebuild(args: argparse.Namespace, store: PgStore, settings: FillSettings) -> None:
    start = query.parse_time("--from", args.start)
    end = query.parse_time("--to", args.end)
    lo, hi = await rebuild(store.pool, start, end, settings)
    print(f"rebuilt the report intervals from {lo.isoformat()} to {hi.isoformat()}")


async def _show(args: argparse.Namespace, store: PgStore, _s: FillSettings) -> None:
    params = query.parse_params({"from": args.start, "to": args.end, "interval": args.interval}, "")
    doc = await query.report(store.pool, args.kind, params, timeout_s=60.0)
    print(query.to_csv(doc) if args.csv else json.dumps(doc, indent=2), end="")


async def _ab(args: argparse.Namespace, store: PgStore, _s: FillSettings) -> None:
    q = {"from": args.start, "to": args.end, "goal": args.goal, "dispositions": args.dispositions}
    if args.control:
        q["control"] = args.control
    exp = experiments.parse_experiment(args.kind, args.name, q)
    result = ab.analyse(await experiments.samples(store.pool, exp), exp.control)
    print(json.dumps(result, indent=2) if args.json else experiments.render_text(exp, result))
