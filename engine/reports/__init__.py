"""KPI reports from history and A/B results (docs/reports.md)."""
