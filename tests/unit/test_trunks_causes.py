"""Failover cause policy: defaults, never-wins precedence, and the outcomes the
two drivers really produce (normalized from the recorded transcripts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.pbx import base
from engine.pbx.asterisk.ami_codec import AmiParser, Event
from engine.pbx.asterisk.events import AmiEventTranslator
from engine.pbx.freeswitch.esl_codec import EslEvent, EslParser
from engine.pbx.freeswitch.normalize import Normalizer
from engine.trunks.causes import cause_name, classify, default_policy
from engine.trunks.config import TrunkGroupConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
POLICY = default_policy()


@pytest.mark.parametrize("q850", [34, 38, 41, 42, 44, 47, 102])
def test_default_failover_q850(q850: int) -> None:
    assert classify(q850, None, "", POLICY) == "failover"


@pytest.mark.parametrize("sip", [408, 500, 502, 503])
def test_default_failover_sip(sip: int) -> None:
    assert classify(None, sip, "", POLICY) == "failover"


@pytest.mark.parametrize("name", ["GATEWAY_DOWN", "INVALID_GATEWAY", "NORMAL_TEMPORARY_FAILURE"])
def test_default_failover_freeswitch_names(name: str) -> None:
    # The FS driver numbers GATEWAY_DOWN 27 and INVALID_GATEWAY 3, neither of
    # which is a failover Q.850 code: only the name catches them.
    q850 = {"GATEWAY_DOWN": 27, "INVALID_GATEWAY": 3, "NORMAL_TEMPORARY_FAILURE": 41}[name]
    assert classify(q850, None, name, POLICY) == "failover"
    assert classify(27, None, "", POLICY) == "final"


@pytest.mark.parametrize(
    ("q850", "sip"), [(1, 404), (16, None), (17, 486), (19, 480), (21, 603), (None, 487)]
)
def test_default_never_list(q850: int | None, sip: int | None) -> None:
    assert classify(q850, sip, "", POLICY) == "final"
    if q850 is not None:
        assert classify(q850, None, "", POLICY) == "final"
    if sip is not None:
        assert classify(None, sip, "", POLICY) == "final"


@pytest.mark.parametrize("sip", [486, 603])
@pytest.mark.parametrize("other_q850", [34, 38, 41, 42, 44, 47, 102])
def test_busy_and_decline_never_fail_over_whatever_the_q850(sip: int, other_q850: int) -> None:
    # A carrier that maps 486 to a congestion-like Q.850 must not make us re-ring.
    assert classify(other_q850, sip, "NORMAL_TEMPORARY_FAILURE", POLICY) == "final"


def test_never_wins_even_when_both_lists_hold_the_cause() -> None:
    # Config refuses the overlap (see test_trunks_config), but the pure rule
    # must hold even for a policy built by hand.
    from dataclasses import replace

    both = replace(POLICY, failover_q850=POLICY.failover_q850 | {17})
    assert classify(17, None, "", both) == "final"
    # Removing 17 from never (the documented way) does make it fail over.
    opened = replace(both, never_q850=POLICY.never_q850 - {17})
    assert classify(17, None, "", opened) == "failover"
    # ...but a 486 alongside it is still final through never_sip.
    assert classify(17, 486, "", opened) == "final"


def test_success_and_unknown() -> None:
    assert classify(16, 200, "NORMAL_CLEARING", POLICY) == "success"
    assert classify(None, None, "", POLICY) == "success"
    # An unlisted cause never re-rings a callee.
    assert classify(88, 488, "INCOMPATIBLE_DESTINATION", POLICY) == "final"


def test_cause_name_normalizes_both_switches() -> None:
    assert cause_name("User busy") == "USER_BUSY"
    assert cause_name("NETWORK_OUT_OF_ORDER (OriginateResponse Failure, Reason 0)") == (
        "NETWORK_OUT_OF_ORDER"
    )
    assert cause_name("  gateway-down ") == "GATEWAY_DOWN"


def test_group_policy_overrides_are_per_group() -> None:
    g = TrunkGroupConfig(name="g", members=["a"], failover_sip=[503], failover_q850=[34])
    policy = g.policy()
    assert classify(None, 500, "", policy) == "final"
    assert classify(None, 503, "", policy) == "failover"
    assert classify(38, None, "", policy) == "final"
    # Names are normalized when read from config.
    g2 = TrunkGroupConfig(name="g", members=["a"], failover_names=["gateway down"])
    assert classify(27, None, "GATEWAY_DOWN", g2.policy()) == "failover"


@given(
    cause=st.one_of(st.none(), st.integers(0, 127)),
    sip=st.one_of(st.none(), st.integers(300, 699)),
    never_q=st.sampled_from([1, 16, 17, 19, 21]),
)
def test_property_any_never_signal_is_final(
    cause: int | None, sip: int | None, never_q: int
) -> None:
    assert classify(never_q, sip, "", POLICY) == "final"
    assert classify(cause, 486, "GATEWAY_DOWN", POLICY) == "final"


# ---------------------------------------------------------------------------
# What the drivers really report, from the real transcripts.
# ---------------------------------------------------------------------------


def _asterisk(name: str, action_id: str, call_id: str) -> base.PbxEvent:
    tr = AmiEventTranslator("ast1")
    tr.expect_originate(action_id, call_id)
    data = (FIXTURES / "asterisk-22" / "transcripts" / name).read_bytes()
    out: list[base.PbxEvent] = []
    for i, msg in enumerate(AmiParser().feed(data)):
        if isinstance(msg, Event):
            out += tr.translate(msg, now=1.0 + i)
    ends = [
        e for e in out if e.call_id == call_id and isinstance(e, base.HungUp | base.OriginateFailed)
    ]
    return ends[-1]


def _freeswitch(name: str, call_id: str, job: str) -> base.PbxEvent:
    norm = Normalizer(switch="fs1")
    norm.jobs[job] = call_id
    data = (FIXTURES / "freeswitch-1.10" / "transcripts" / name).read_bytes()
    out: list[base.PbxEvent] = []
    for msg in EslParser().feed(data):
        if isinstance(msg, EslEvent):
            out += norm(msg, now=1.0)
    ends = [
        e for e in out if e.call_id == call_id and isinstance(e, base.HungUp | base.OriginateFailed)
    ]
    return ends[-1]


FS = "11111111-aaaa-4bbb-8ccc-0000000000"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (("ast", "originate-busy.ami", "orig-busy", "1795318483.2"), "final"),
        (("ast", "originate-congestion.ami", "orig-cong", "1795318490.4"), "failover"),
        (("ast", "originate-noanswer.ami", "orig-noans", "1795318496.6"), "final"),
        (("ast", "originate-deadtrunk.ami", "orig-dead", "call-dead"), "failover"),
        (("fs", "originate-answered.esl", FS + "02", "job-0002"), "success"),
        (("fs", "originate-busy.esl", FS + "04", "job-0004"), "final"),
        (("fs", "originate-congestion.esl", FS + "05", "job-0005"), "failover"),
        (("fs", "originate-noanswer.esl", FS + "06", "job-0006"), "final"),
        (("fs", "originate-gateway-down.esl", FS + "07", "job-0007"), "failover"),
    ],
)
def test_recorded_outcomes_classify_the_same_on_both_switches(
    source: tuple[str, str, str, str], expected: str
) -> None:
    kind, name, a, b = source
    ev = _asterisk(name, a, b) if kind == "ast" else _freeswitch(name, a, b)
    assert isinstance(ev, base.HungUp | base.OriginateFailed)
    assert classify(ev.cause, ev.sip_code, ev.cause_text, POLICY) == expected
