"""What a Grafana dashboard asks Prometheus for, and what an engine's /v1/metrics exports.

The dashboard's PromQL is parsed with a real PromQL parser (promql-parser, the Python binding
of the Rust parser GreptimeDB uses), so functions, label names in ``by``/``on``/``without``,
keywords, numbers and durations are never mistaken for metric names. Grafana's own variables
are not PromQL: ``$__rate_interval`` and friends become a duration and ``$queue`` appears
only inside label-matcher strings, before parsing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "telephony-config" / "grafana" / "call-centre.json"

_RANGE_VARS = re.compile(r"\$(?:__rate_interval|__interval|__range|\{__rate_interval\})")
_LABEL_VALUES = re.compile(r"^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*(\w+)\s*\)$")
_CHILDREN = ("lhs", "rhs", "expr", "args", "param", "vector_selector")


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))  # a collapsed row keeps its panels inside


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target."""
    out = []
    for p in _panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((str(p.get("title")), str(t["expr"])))
    return out


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable, metric, label) of each ``label_values(metric, label)`` template variable."""
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v.get("query"), dict) else str(v.get("query"))
        m = _LABEL_VALUES.match(q.strip())
        assert m, f"variable {v.get('name')}: expected label_values(metric, label), got {q!r}"
        out.append((str(v["name"]), m.group(1), m.group(2)))
    return out


def selectors(expr: str) -> list[tuple[str, frozenset[str]]]:
    """(metric, label names matched) of every vector selector of a PromQL expression."""
    tree = promql_parser.parse(_RANGE_VARS.sub("5m", expr))
    found: list[tuple[str, frozenset[str]]] = []

    def walk(node: Any) -> None:
        if node is None:
            return
        if isinstance(node, list | tuple):
            for n in node:
                walk(n)
            return
        if type(node).__name__ == "VectorSelector":
            matchers = node.matchers.matchers
            labels = frozenset(m.name for m in matchers if m.name != "__name__")
            if node.name:
                found.append((node.name, labels))
            found.extend((m.value, labels) for m in matchers if m.name == "__name__")
            return
        for attr in _CHILDREN:
            walk(getattr(node, attr, None))

    walk(tree)
    return found


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects (vector selectors, by name or __name__)."""
    return {name for name, _labels in selectors(expr)}


def exported(text: str) -> tuple[set[str], list[tuple[str, dict[str, str], float]]]:
    """(every name a query may use, every sample) of one exposition. A family with no
    sample still counts as exported (e.g. ASA before the first answered call): its name
    with the suffixes its type gives it."""
    names: set[str] = set()
    samples = []
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        elif fam.type == "histogram":
            names |= {fam.name + s for s in ("_bucket", "_sum", "_count")}
        for s in fam.samples:
            names.add(s.name)
            samples.append((s.name, dict(s.labels), float(s.value)))
    return names, samples
