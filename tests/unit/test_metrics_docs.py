"""Every metric the docs name (prose, `name{labels}`, PromQL examples, Grafana variable
queries) is one docs/metrics.md's tables list, with labels it has; the API test
tests/api/test_metrics_scrape.py checks the tables against a running engine's /v1/metrics."""

from __future__ import annotations

from tests import metrics_docs


def test_every_metric_the_docs_name_is_in_the_metrics_tables() -> None:
    table = metrics_docs.documented()
    assert len(table) > 50, f"docs/metrics.md: only {len(table)} table rows parsed"
    assert not metrics_docs.unknown_references(table)


def test_the_table_parser_gives_types_suffixes_and_labels() -> None:
    table = metrics_docs.documented(
        "| `engine_x` | counter | lane | m |\n| `engine_y_seconds` | histogram | - | m |\n"
    )
    assert set(metrics_docs.series_names(table)) == {
        "engine_x",
        "engine_x_total",
        "engine_y_seconds",
        "engine_y_seconds_bucket",
        "engine_y_seconds_sum",
        "engine_y_seconds_count",
    }
    assert table["engine_x"].labels == {"lane"}
    assert metrics_docs._label_names('{lane="cdrs", kind}') == {"lane", "kind"}
