"""Pacing benchmark: ``python -m bench.pacing`` (``make bench-pacing``)."""
