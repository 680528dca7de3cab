"""telephony-config/grafana/call-centre.json is a well-formed dashboard: every expression parses
as PromQL, the template variables exist and are used, panels have unique ids and one data
source. (That every metric it names is exported: tests/api/test_metrics_scrape.py.)"""

from __future__ import annotations

from typing import Any

from tests import grafana_check


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_dashboard_structure() -> None:
    d = grafana_check.load()
    panels = _panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Queues", "Campaigns", "Trunks", "Engine health"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exprs = grafana_check.expressions(d)
    assert len(exprs) >= 30
    for name, _metric, _label in grafana_check.variable_queries(d):
        used = [t for t, e in exprs if f'=~"${name}"' in e]
        assert used, f"${name} is defined but no panel filters on it"
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert grafana_check.metric_names(t["expr"]), (p["title"], t["expr"])
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
