"""Reading the interval tables: sums over the asked interval, then each row's KPIs.

``GET /v1/reports/{queues|agents|campaigns|trunks}`` and the CLI both call :func:`report`.
The parameters are checked here (:func:`parse_params`) so every caller gets the same errors.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg

from engine.core.errors import InvalidRequest
from engine.reports import kpi
from engine.reports.fill import BUCKET, DAY, EPOCH, ROLLUPS, ceil_day, floor_bucket, floor_day
from engine.store.pg.errors import PG_ERRORS, translate

KINDS = ("queues", "agents", "campaigns", "trunks")
INTERVALS: dict[str, timedelta | None] = {
    "15m": BUCKET,
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "total": None,  # one row per key over the whole range
}
MAX_RANGE = timedelta(days=400)
# A report is one response: beyond this many rows it asks for a longer interval (a 30-day
# report of 200 agents at 15 minutes would be 576,000 rows, some 150 MB of JSON).
MAX_ROWS = 100_000

# kind -> (table, key column, summed columns, max columns)
_TABLES = {
    "queues": "report_queue_intervals",
    "agents": "report_agent_intervals",
    "campaigns": "report_campaign_intervals",
    "trunks": "report_trunk_intervals",
}
# The columns are the fill's own (one list of each table's sums and maxima: ROLLUPS).
_SPEC: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    kind: (table, ROLLUPS[table][1][0], ROLLUPS[table][2], ROLLUPS[table][3])
    for kind, table in _TABLES.items()
}
_KEY_NAME = {"queues": "queue", "agents": "agent_id", "campaigns": "campaign_id", "trunks": "trunk"}


@dataclass(frozen=True, slots=True)
class Params:
    start: datetime
    end: datetime
    interval: str
    csv: bool


def parse_time(name: str, raw: str | None) -> datetime:
    if raw is None or raw == "":
        raise InvalidRequest(
            f"{name}: required, an ISO 8601 date-time with a time zone (e.g. 2026-12-01T00:00:00Z)",
            details={"parameter": name},
        )
    try:
        # RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
        value = datetime.fromisoformat(raw.upper())
    except ValueError:
        value = None
    if value is None or value.utcoffset() is None:
        raise InvalidRequest(
            f"{name}: expected an ISO 8601 date-time with a time zone "
            f"(e.g. 2026-12-01T00:00:00Z), got {raw[:64]!r}",
            details={"parameter": name},
        )
    if not datetime(2000, 1, 1, tzinfo=UTC) <= value <= datetime(2200, 1, 1, tzinfo=UTC):
        raise InvalidRequest(
            f"{name}: expected a date-time between 2000 and 2200, got {raw[:64]!r}",
            details={"parameter": name},
        )
    return value.astimezone(UTC)


def parse_params(query: Mapping[str, str], accept: str = "") -> Params:
    start = parse_time("from", query.get("from"))
    end = parse_time("to", query.get("to"))
    if end <= start:
        raise InvalidRequest(
            f"to: expected a time after from ({start.isoformat()}), got {end.isoformat()}",
            details={"parameter": "to"},
        )
    if end - start > MAX_RANGE:
        raise InvalidRequest(
            f"to: the range may span at most {MAX_RANGE.days} days (got {(end - start).days} days)",
            details={"parameter": "to"},
        )
    interval = query.get("interval", "15m")
    if interval not in INTERVALS:
        raise InvalidRequest(
            f"interval: expected one of {', '.join(INTERVALS)}, got {interval[:32]!r}",
            details={"parameter": "interval"},
        )
    fmt = query.get("format")
    if fmt is not None and fmt not in ("json", "csv"):
        raise InvalidRequest(
            f"format: expected json or csv, got {fmt[:32]!r}", details={"parameter": "format"}
        )
    as_csv = fmt == "csv" or (fmt is None and _prefers_csv(accept))
    return Params(start, end, interval, as_csv)


def _source(table: str) -> str:
    """The rows of ``[$1, $2)``: the day table's for the whole days ``[$4, $5)``, the
    15-minute table's for the rest."""
    days = ROLLUPS[table][0]
    return (
        f"(SELECT * FROM {days} WHERE bucket >= $4 AND bucket < $5 "
        f"UNION ALL SELECT * FROM {table} WHERE bucket >= $1 AND bucket < $2 "
        f"AND NOT (bucket >= $4 AND bucket < $5)) AS src"
    )


def _prefers_csv(accept: str) -> bool:
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "text/csv" in types and types.index("text/csv") <= min(
        (types.index(t) for t in ("application/json", "*/*") if t in types), default=len(types)
    )


@lru_cache(maxsize=8192)
def _iso(t: datetime) -> str:
    # Cached: a 30-day report at 15 minutes names each of its 2,880 starts once per key.
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def report(
    pool: asyncpg.Pool,
    kind: str,
    p: Params,
    *,
    limits: Mapping[str, tuple[str, float]] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """The report of ``kind`` over ``[from, to)``: one row per key and interval, sums and KPIs.

    ``limits``: each campaign's (abandon period name, limit) for the legal-period figures
    (read from the ``campaigns`` table when None)."""
    table, key_col, sums, maxes = _SPEC[kind]
    step = INTERVALS[p.interval]
    lo = floor_bucket(p.start)
    # Whole UTC days inside the range come from the day tables when the interval is a day or
    # the whole range (96 times fewer rows); the edges, and every shorter interval, from the
    # 15-minute rows. An empty day span ($4 = $5) reads no day row.
    d1, d2 = ceil_day(lo), floor_day(p.end)
    if not (step is None or step == DAY) or d1 >= d2:
        d1 = d2 = p.end
    cols = ", ".join(
        [f"sum({c})::float8 AS {c}" for c in sums] + [f"max({c})::float8 AS {c}" for c in maxes]
    )
    if step is None:
        group, start_expr = "", "$1::timestamptz"
    else:
        group = ", 2"
        start_expr = f"date_bin('{int(step.total_seconds())} seconds'::interval, bucket, $3)"
    args: tuple[Any, ...] = (lo, p.end, EPOCH, d1, d2)
    sql = (
        f"SELECT {key_col} AS key, {start_expr} AS start, {cols} "
        f"FROM {_source(table)} WHERE $3::timestamptz IS NOT NULL "
        f"GROUP BY 1{group} ORDER BY 2, 1 LIMIT {MAX_ROWS + 1}"
    )
    try:
        async with asyncio.timeout(timeout_s):
            async with pool.acquire() as conn:
                rows = await conn.fetch(sql, *args)
                disp: dict[tuple[str, datetime], dict[str, int]] = defaultdict(dict)
                period: dict[str, dict[str, Any]] = {}
                if kind == "campaigns":
                    source = _source("report_campaign_dispositions")
                    for r in await conn.fetch(
                        f"SELECT campaign_id AS key, {start_expr} AS start, disposition, "
                        f"sum(calls)::int AS n FROM {source} "
                        f"WHERE $3::timestamptz IS NOT NULL GROUP BY 1{group}, 3",
                        *args,
                    ):
                        disp[(r["key"], r["start"])][r["disposition"]] = r["n"]
                    keys = sorted({r["key"] for r in rows})
                    period = await _periods(conn, keys, p.end, limits)
    except PG_ERRORS as err:
        raise translate(err, f"reading the {kind} report") from err
    if len(rows) > MAX_ROWS:
        raise InvalidRequest(
            f"interval: the {kind} report would have more than {MAX_ROWS} rows at "
            f"{p.interval}; ask for a longer interval or a shorter range",
            details={"parameter": "interval", "max_rows": MAX_ROWS},
        )
    out_rows = []
    for r in rows:
        start = r["start"]
        end = start + step if step is not None else p.end
        s = dict(r)
        row: dict[str, Any] = {
            _KEY_NAME[kind]: r["key"],
            "start": _iso(start),
            "end": _iso(min(end, p.end) if step is None else end),
        }
        for c in (*sums, *maxes):
            v = float(s[c] or 0.0)
            row[c] = int(v) if not c.endswith("_s") else round(v, 3)
        if kind == "queues":
            row.update(kpi.queue_kpis(s))
        elif kind == "agents":
            row.update(kpi.agent_kpis(s))
        elif kind == "campaigns":
            d = disp.get((r["key"], start), {})
            row["dispositions"] = dict(sorted(d.items()))
            row.update(kpi.campaign_kpis(s, d))
        else:
            row.update(kpi.trunk_kpis(s))
        out_rows.append(row)
    doc: dict[str, Any] = {
        "kind": kind,
        "from": _iso(lo),
        "to": _iso(p.end),
        "interval": p.interval,
        "rows": out_rows,
    }
    if kind == "campaigns":
        doc["abandon_period"] = period
    return doc


async def _periods(
    conn: asyncpg.Connection,
    keys: list[str],
    end: datetime,
    limits: Mapping[str, tuple[str, float]] | None,
) -> dict[str, dict[str, Any]]:
    """Each campaign's abandon rate over its legal period ending at ``end`` (docs/reports.md)."""
    if limits is None:
        limits = {}
        for r in await conn.fetch(
            "SELECT campaign_id, spec->>'abandon_period' AS period, "
            "(spec->>'abandon_limit')::float8 AS lim FROM campaigns "
            "WHERE campaign_id = ANY($1::text[])",
            keys,
        ):
            limits[r["campaign_id"]] = (r["period"] or "fcc_30d", r["lim"] or 0.03)
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        name, limit = limits.get(key, ("fcc_30d", 0.03))
        span = timedelta(days=30) if name == "fcc_30d" else timedelta(days=1)
        r = await conn.fetchrow(
            "SELECT coalesce(sum(abandoned), 0)::int AS a, coalesce(sum(human), 0)::int AS h "
            "FROM report_campaign_intervals WHERE campaign_id = $1 AND bucket >= $2 "
            "AND bucket < $3",
            key,
            floor_bucket(end - span),
            end,
        )
        assert r is not None
        out[key] = {
            "period": name,
            "start": _iso(floor_bucket(end - span)),
            "end": _iso(end),
            **kpi.period_abandon(int(r["a"]), int(r["h"]), float(limit)),
        }
    return out


def to_csv(doc: Mapping[str, Any]) -> str:
    """The report's rows as CSV (RFC 4180 quoting by the csv module): nested figures (a
    campaign's dispositions and conversions) become one column each, and a campaign's
    legal-period figures are repeated on each of its rows."""
    flat: list[dict[str, Any]] = []
    for row in doc["rows"]:
        out: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, dict):
                for sub, sv in v.items():
                    out[f"{k}.{sub}"] = sv
            else:
                out[k] = v
        period = doc.get("abandon_period", {}).get(row.get("campaign_id", ""))
        if period is not None:
            out["period_abandon_pct"] = period["abandon_pct"]
            out["period_limit_pct"] = period["limit_pct"]
        flat.append(out)
    _table, _key, sums, maxes = _SPEC[doc["kind"]]
    columns: list[str] = [_KEY_NAME[doc["kind"]], "start", "end", *sums, *maxes]
    for out in flat:
        columns.extend(c for c in out if c not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n", restval="")
    writer.writeheader()
    for out in flat:
        writer.writerow({k: "" if v is None else v for k, v in out.items()})
    return buf.getvalue()


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc)
