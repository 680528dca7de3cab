"""Write the reports operations (docs/reports.md) into engine/api/openapi.json.

Run after changing the reports API, then scripts/openapi_security.py (roles, 403/429)::

    .venv/bin/python scripts/openapi_reports.py && .venv/bin/python scripts/openapi_security.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `engine` importable
    sys.path.insert(0, str(ROOT))

from engine.reports.experiments import GOALS  # noqa: E402
from engine.reports.query import INTERVALS, KINDS  # noqa: E402

DOCUMENT = ROOT / "engine" / "api" / "openapi.json"
E = {
    code: {"$ref": f"#/components/responses/{name}"}
    for code, name in (("400", "E400"), ("401", "E401"), ("503", "E503Storage"))
}
TIME = {"type": "string", "format": "date-time"}


def _q(name: str, schema: dict[str, Any], description: str, required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


RANGE = [
    _q("from", TIME, "Start (ISO 8601 / RFC 3339 with a time zone), floored to 15 minutes.", True),
    _q("to", TIME, "End, exclusive; after `from`.", True),
]
SCHEMAS: dict[str, Any] = {
    "Report": {
        "type": "object",
        "required": ["kind", "from", "to", "interval", "rows"],
        "properties": {
            "kind": {"type": "string", "enum": list(KINDS)},
            "from": TIME,
            "to": TIME,
            "interval": {"type": "string", "enum": list(INTERVALS)},
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start", "end"],
                    "properties": {"start": TIME, "end": TIME},
                    "description": "The key (queue, agent_id, campaign_id or trunk), the "
                    "interval's sums and its KPIs (docs/reports.md); rates are null when "
                    "nothing counts.",
                },
            },
            "abandon_period": {
                "type": "object",
                "description": "Campaigns only: each campaign's abandon rate over its legal "
                "period ending at `to`.",
            },
        },
    },
    "AbResult": {
        "type": "object",
        "required": ["kind", "name", "variants", "verdict"],
        "properties": {
            "kind": {"type": "string", "enum": ["splits", "queues"]},
            "name": {"type": "string"},
            "from": TIME,
            "to": TIME,
            "goal": {"type": "string", "enum": list(GOALS)},
            "dispositions": {"type": "array", "items": {"type": "string"}},
            "control": {"type": ["string", "null"]},
            "alpha": {"type": "number"},
            "conclusive": {"type": "boolean"},
            "verdict": {"type": "string"},
            "variants": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["variant", "n", "conversions", "handled"],
                    "properties": {
                        "variant": {"type": "string"},
                        "n": {"type": "integer"},
                        "conversions": {"type": "integer"},
                        "conversion_pct": {"type": ["number", "null"]},
                        "conversion_ci95_pct": {
                            "type": ["array", "null"],
                            "items": {"type": ["number", "null"]},
                        },
                        "handled": {"type": "integer"},
                        "aht_s": {"type": ["number", "null"]},
                        "aht_sd_s": {"type": ["number", "null"]},
                        "vs_control": {"type": "object"},
                    },
                },
            },
        },
    },
}


def _report(kind: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": f"report{kind.capitalize()}",
            "summary": f"KPI report per {kind[:-1]} and interval (JSON or CSV)",
            "description": "Sums of the 15-minute interval tables over `[from, to)`, rolled up "
            "to `interval`, with each row's KPIs (docs/reports.md). CSV with `format=csv` or "
            "`Accept: text/csv`.",
            "parameters": [
                *RANGE,
                _q(
                    "interval",
                    {"type": "string", "enum": list(INTERVALS), "default": "15m"},
                    "Row length; `total`: one row per key over the range.",
                ),
                _q("format", {"type": "string", "enum": ["json", "csv"]}, "Overrides Accept."),
            ],
            "responses": {
                "200": {
                    "description": "The report",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                **E,
            },
        }
    }


def _experiment(kind: str) -> dict[str, Any]:
    what = "an IVR split test" if kind == "splits" else "a queue's alternating strategies"
    return {
        "get": {
            "operationId": f"abResults{kind.capitalize()}",
            "summary": f"A/B results of {what}",
            "description": "Per variant: sample size, conversion with its 95 % Wilson "
            "interval, AHT; against the control, the two-proportion test's and Welch's "
            "t-test's p-values; a verdict that says when the samples are too small.",
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
                },
                *RANGE,
                _q("goal", {"type": "string", "enum": list(GOALS)}, "What counts as converted."),
                _q(
                    "dispositions",
                    {
                        "type": "string",
                        "pattern": "^[a-z][a-z0-9_]{0,31}(,[a-z][a-z0-9_]{0,31}){0,19}$",
                    },
                    "goal=disposition: the converting dispositions (default sale).",
                ),
                _q(
                    "control",
                    {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
                    "The variant the others are compared with (default: the first by name).",
                ),
            ],
            "responses": {
                "200": {
                    "description": "The A/B results",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/AbResult"}}
                    },
                },
                **E,
            },
        }
    }


def apply(doc: dict[str, Any]) -> dict[str, Any]:
    doc["components"]["schemas"].update(json.loads(json.dumps(SCHEMAS)))
    for kind in KINDS:
        doc["paths"][f"/v1/reports/{kind}"] = _report(kind)
    for kind in ("splits", "queues"):
        doc["paths"][f"/v1/reports/experiments/{kind}/{{name}}"] = _experiment(kind)
    return doc


def main() -> int:
    doc = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    DOCUMENT.write_text(
        json.dumps(apply(doc), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
