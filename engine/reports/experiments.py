"""The samples of an experiment, read from history (docs/reports.md "A/B results").

Two kinds:

- ``splits``: an IVR ``split`` test. A call is in the variant its CDR's variables name
  (``ivr_split.<test>``, set when the call passed the split).
- ``queues``: a queue whose routing strategy alternated. A queue entry is in the variant of
  the strategy that routed it (``queue_entries.strategy``, migration 0011).

A call converts when (``goal``) it was answered by an agent (``answered``: a queue entry of the
call ended answered), or when an agent gave its campaign attempt one of the ``dispositions``
(``disposition``, default ``sale``). Its handle time is talk + wrap-up of its answered entries
whose wrap-up is over (the AHT of docs/reports.md).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.core.errors import InvalidRequest
from engine.reports.ab import VariantSample
from engine.reports.query import parse_time
from engine.store.pg.errors import PG_ERRORS, translate

EXPERIMENT_KINDS = ("splits", "queues")
GOALS = ("answered", "disposition")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_DISPOSITION = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True, slots=True)
class Experiment:
    kind: str
    name: str
    start: datetime
    end: datetime
    goal: str
    dispositions: tuple[str, ...]
    control: str | None


def parse_experiment(kind: str, name: str, query: Mapping[str, str]) -> Experiment:
    if kind not in EXPERIMENT_KINDS:
        raise InvalidRequest(f"kind: expected splits or queues, got {kind[:32]!r}")
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"name: expected a split test or queue name ({_NAME.pattern}), got {name[:64]!r}",
            details={"parameter": "name"},
        )
    start, end = parse_time("from", query.get("from")), parse_time("to", query.get("to"))
    if end <= start:
        raise InvalidRequest(
            f"to: expected a time after from ({start.isoformat()}), got {end.isoformat()}",
            details={"parameter": "to"},
        )
    goal = query.get("goal", "answered")
    if goal not in GOALS:
        raise InvalidRequest(
            f"goal: expected answered or disposition, got {goal[:32]!r}",
            details={"parameter": "goal"},
        )
    raw = query.get("dispositions", "sale")
    dispositions = tuple(d for d in raw.split(","))
    bad = [d for d in dispositions if not _DISPOSITION.fullmatch(d)]
    if bad or len(dispositions) > 20:
        raise InvalidRequest(
            "dispositions: expected up to 20 comma-separated disposition names "
            f"(lower case, e.g. sale,callback), got {raw[:80]!r}",
            details={"parameter": "dispositions"},
        )
    control = query.get("control")
    if control is not None and not _NAME.fullmatch(control):
        raise InvalidRequest(
            f"control: expected a variant name, got {control[:64]!r}",
            details={"parameter": "control"},
        )
    return Experiment(kind, name, start, end, goal, dispositions, control)


# Per call: its variant, whether it converted, its handle time (NULL: not handled).
_CONVERTED = {
    "answered": "EXISTS (SELECT 1 FROM queue_entries q WHERE q.call_id = s.call_id "
    "AND q.outcome = 'answered')",
    "disposition": "EXISTS (SELECT 1 FROM campaign_attempts a WHERE a.call_id = s.call_id "
    "AND a.disposition = ANY($4::text[]))",
}
_HANDLE = (
    "(SELECT sum(coalesce(q.talk_s, 0) + q.wrap_up_s) FROM queue_entries q "
    "WHERE q.call_id = s.call_id AND q.outcome = 'answered' AND q.wrap_up_s IS NOT NULL)"
)
_SAMPLES = {
    "splits": """
WITH s AS (
    SELECT DISTINCT ON (c.call_id) c.call_id, c.variables ->> $3 AS variant
    FROM cdr c
    WHERE c.started_at >= $1 AND c.started_at < $2 AND c.variables ? $3
    ORDER BY c.call_id, c.attempt
)""",
    "queues": """
WITH s AS (
    SELECT e.call_id, e.strategy AS variant, e.entry_id
    FROM queue_entries e
    WHERE e.entered_at >= $1 AND e.entered_at < $2 AND e.queue = $3
      AND e.strategy IS NOT NULL AND e.requeued_from IS NULL
)""",
}


def _sql(kind: str, goal: str) -> str:
    if kind == "queues":
        # The entry itself: answered or not, and its own handle time.
        converted = (
            "(SELECT q.outcome = 'answered' FROM queue_entries q WHERE q.entry_id = s.entry_id)"
            if goal == "answered"
            else _CONVERTED[goal]
        )
        handle = (
            "(SELECT coalesce(q.talk_s, 0) + q.wrap_up_s FROM queue_entries q "
            "WHERE q.entry_id = s.entry_id AND q.outcome = 'answered')"
        )
    else:
        converted, handle = _CONVERTED[goal], _HANDLE
    return (
        _SAMPLES[kind]
        + f""", per AS (
    SELECT s.variant, {converted} AS converted, {handle} AS handle_s FROM s
)
SELECT variant, count(*)::int AS n, count(*) FILTER (WHERE converted)::int AS conversions,
       count(handle_s)::int AS handled, avg(handle_s)::float8 AS mean,
       stddev_samp(handle_s)::float8 AS sd
FROM per GROUP BY variant ORDER BY variant
"""
    )


async def samples(
    pool: asyncpg.Pool, exp: Experiment, *, timeout_s: float = 30.0
) -> list[VariantSample]:
    key = f"ivr_split.{exp.name}" if exp.kind == "splits" else exp.name
    args: list[Any] = [exp.start, exp.end, key]
    if exp.goal == "disposition":
        args.append(list(exp.dispositions))
    try:
        async with asyncio.timeout(timeout_s):
            rows = await pool.fetch(_sql(exp.kind, exp.goal), *args)
    except PG_ERRORS as err:
        raise translate(err, f"reading experiment {exp.kind}/{exp.name}") from err
    return [
        VariantSample(
            variant=str(r["variant"]),
            n=r["n"],
            conversions=r["conversions"],
            handled=r["handled"],
            aht_mean_s=r["mean"],
            aht_sd_s=r["sd"],
        )
        for r in rows
    ]


def render_text(exp: Experiment, result: Mapping[str, Any]) -> str:
    """The A/B report for a terminal."""
    lines = [
        f"A/B results: {exp.kind[:-1]} {exp.name!r}, {exp.start.isoformat()} .. "
        f"{exp.end.isoformat()}",
        f"conversion = {exp.goal}"
        + (f" ({', '.join(exp.dispositions)})" if exp.goal == "disposition" else "")
        + f"; control = {result.get('control')}; alpha = {result.get('alpha', 0.05)}",
        "",
        f"{'variant':<16}{'n':>7}{'conv':>7}{'conv %':>9}{'95% CI':>20}{'AHT s':>9}"
        f"{'p(conv)':>10}{'p(AHT)':>10}",
    ]
    for v in result["variants"]:
        ci = v["conversion_ci95_pct"]
        ci_text = f"{ci[0]:.1f} .. {ci[1]:.1f}" if ci else "-"
        vs = v.get("vs_control") or {}

        def fmt(x: Any, spec: str) -> str:
            if x is None:
                return "-"
            if spec == ".4f" and 0 <= x < 0.0001:
                return "<0.0001"
            return format(x, spec)

        lines.append(
            f"{v['variant']:<16}{v['n']:>7}{v['conversions']:>7}"
            f"{fmt(v['conversion_pct'], '.2f'):>9}{ci_text:>20}{fmt(v['aht_s'], '.1f'):>9}"
            f"{fmt(vs.get('conversion_p_value'), '.4f'):>10}{fmt(vs.get('aht_p_value'), '.4f'):>10}"
        )
    lines += ["", f"verdict: {result['verdict']}"]
    return "\n".join(lines)
