"""What docs/metrics.md's tables promise, and every metric the other docs name.

The tables (``| `name` | type | labels | meaning |``) are the operator's contract: a unit test
checks that every metric another page names (a backticked name, ``name{labels}``, or a PromQL
expression) is in them, and tests/api/test_metrics_scrape.py checks that a running engine
exports exactly them, with those types and labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests import grafana_check

ROOT = Path(__file__).resolve().parents[1]
METRICS_MD = ROOT / "docs" / "metrics.md"
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

_ROW = re.compile(r"^\| `(engine_[a-z0-9_]+)` \| ([a-z]+) \| ([^|]*) \|", re.M)
_SPAN = re.compile(r"`([^`\n]+)`")
# A metric name in a span: not part of a path, a longer word or a placeholder.
_NAME = re.compile(r"(?<![\w/.<])(engine_[a-z0-9_]+)(\{[^}]*\})?")
_LABEL_VALUES = re.compile(r"^label_values\(\s*(engine_[a-z0-9_]+)\s*,\s*(\w+)\s*\)$")
_PROMQL = re.compile(r"^[a-z_]+(?:\s+by\s*\([^)]*\))?\s*\(")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ()}
# engine_* words in the docs that are not metrics: channel variables, config keys, report
# fields, fixture names.
NOT_METRICS = frozenset(
    {
        "engine_dir",
        "engine_ivr",
        "engine_ivr_flow",
        "engine_park",
        "engine_safe_harbour",
        "engine_cpu_pct_of_one_core",
        "engine_restart_with_two_agents_on_calls",
        "engine_test_",
        "engine_test_carrier",
    }
)


@dataclass(frozen=True)
class Documented:
    type: str  # counter | gauge | histogram
    labels: frozenset[str]


def documented(text: str | None = None) -> dict[str, Documented]:
    """Every table row of docs/metrics.md: base name -> type and label names."""
    out: dict[str, Documented] = {}
    for m in _ROW.finditer(METRICS_MD.read_text(encoding="utf-8") if text is None else text):
        name, kind, cell = m.group(1), m.group(2), m.group(3).strip()
        assert kind in _SUFFIXES, f"docs/metrics.md {name}: type {kind!r}, expected {_SUFFIXES}"
        assert name not in out, f"docs/metrics.md: {name} has two rows"
        labels = frozenset() if cell == "-" else frozenset(x.strip() for x in cell.split(","))
        out[name] = Documented(kind, labels)
    return out


def series_names(table: dict[str, Documented]) -> dict[str, str]:
    """Every name a query may select (with the suffixes each type adds) -> its base name."""
    out = {name: name for name in table}
    for name, doc in table.items():
        out.update({name + suffix: name for suffix in _SUFFIXES[doc.type]})
    return out


@dataclass(frozen=True)
class Reference:
    page: str
    span: str
    name: str
    labels: frozenset[str]


def _label_names(braces: str) -> frozenset[str]:
    inner = braces.strip("{}")
    return frozenset(p.split("=")[0].strip().rstrip("!~") for p in inner.split(",") if p.strip())


def references(page: Path) -> list[Reference]:
    """Every metric a page names in backticks, with the label names it uses. A span that is
    a PromQL expression is parsed (so a broken example fails) and its selectors taken."""
    out: list[Reference] = []
    rel = str(page.relative_to(ROOT))
    for span in _SPAN.findall(page.read_text(encoding="utf-8")):
        if "engine_" not in span:
            continue
        if grafana := _LABEL_VALUES.match(span):  # a Grafana variable query, not PromQL
            out.append(Reference(rel, span, grafana[1], frozenset({grafana[2]})))
            continue
        if _PROMQL.match(span):
            try:
                found = grafana_check.selectors(span)
            except Exception as err:
                raise AssertionError(f"{rel}: `{span}` is not valid PromQL: {err}") from err
            out += [Reference(rel, span, name, labels) for name, labels in found]
            continue
        for m in _NAME.finditer(span):
            if m.group(1) not in NOT_METRICS:
                out.append(Reference(rel, span, m.group(1), _label_names(m.group(2) or "")))
    return out


def unknown_references(table: dict[str, Documented]) -> list[str]:
    """Every reference in the docs to a metric or label docs/metrics.md does not list."""
    known = series_names(table)
    problems = []
    for page in PAGES:
        for ref in references(page):
            base = known.get(ref.name)
            if base is None:
                problems.append(f"{ref.page}: `{ref.span}`: no metric {ref.name}")
            elif extra := ref.labels - table[base].labels - {"le"}:
                problems.append(f"{ref.page}: `{ref.span}`: {base} has no label {sorted(extra)}")
    return problems
