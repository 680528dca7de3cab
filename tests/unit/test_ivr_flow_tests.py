"""Every case of ivr/tests/*.yaml, run by the offline flow tester (engine/ivr/tester.py).

Authors get CI for their flows: `make test` collects this file. Every shipped flow
must have a test file, so a new flow cannot be shipped untested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import ivr_catalog
from engine.config import load_config
from engine.ivr.loader import load_dir
from engine.ivr.tester import TestCase, load_cases, run_case

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "ivr"
CATALOG = ivr_catalog(ROOT / "telephony-config" / "engine.toml")
CASES = [c for f in sorted((FLOWS / "tests").glob("*.yaml")) for c in load_cases(f)]


def test_every_shipped_flow_has_tests() -> None:
    flows, errors = load_dir(FLOWS, catalog=CATALOG)
    assert errors == []
    tested = {c.flow for c in CASES}
    assert sorted(set(flows) - tested) == []


@pytest.mark.parametrize("case", CASES, ids=[f"{Path(c.source).stem}: {c.name}" for c in CASES])
async def test_flow_case(case: TestCase) -> None:
    problems = await run_case(FLOWS, case, CATALOG)
    assert problems == [], "\n".join(problems)


def test_the_shipped_config_sends_callers_only_to_shipped_flows() -> None:
    # The sales queue's overflow named "voicemail", which did not ship: a caller who had
    # waited 5 minutes was answered by no flow and hung up on ("unknown IVR flow").
    cfg = load_config(str(ROOT / "telephony-config" / "engine.toml"))
    named = {r.ivr_flow for q in cfg.queues for r in q.overflow if r.ivr_flow}
    flows, _ = load_dir(FLOWS, catalog=CATALOG)
    assert named and sorted(named - set(flows)) == []
