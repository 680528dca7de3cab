"""The AMD bench's scoring (bench/amd.py) and the frontier's fast point file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.amd import Outcome, summarize
from engine.speech.amd import AmdParams, parse_amd_conf

ROOT = Path(__file__).resolve().parents[2]


def test_summary_scores_as_the_campaign_routes() -> None:
    # NOTSURE goes to a person (engine/campaigns/outcomes.py): timed for people, counted as a
    # machine passed to a person for machines; only MACHINE takes a person for a machine.
    res = summarize(
        [
            Outcome("0", "human", "HUMAN", "HUMAN-500-500", 1.5, speech_end_s=1.0),
            Outcome("2", "human", "NOTSURE", "TOOLONG-1900", 1.9, speech_end_s=1.8),
            Outcome("4", "human", "MACHINE", "MAXWORDS-4-3", 1.2, speech_end_s=2.2),
            Outcome("1", "machine", "MACHINE", "LONGGREETING-1500-1500", 1.7),
            Outcome("3", "machine", "NOTSURE", "TOOLONG-1900", 1.9),
            Outcome("5", "machine", "HUMAN", "HUMAN-200-200", 1.1),
        ]
    )
    assert res["humans_taken_for_machines"] == 1
    assert res["humans_notsure"] == 1
    assert res["machines_taken_for_humans"] == 1
    assert res["machines_passed_to_a_person"] == 2
    assert (res["human_decision_p50_s"], res["human_decision_p95_s"]) == (1.5, 1.5)
    assert res["human_to_person_p95_s"] == 1.9
    assert res["human_to_person_after_hello_p95_s"] == 0.5
    assert res["human_speech_end_p95_s"] == 2.2
    # HUMAN for a person, not HUMAN for a machine; and as routed (MACHINE for a machine only).
    assert res["accuracy"] == 0.5
    assert res["accuracy_as_routed"] == round(3 / 6, 3)


def test_the_fast_point_is_a_valid_amd_conf_that_ends_before_two_seconds() -> None:
    conf = ROOT / "telephony-config" / "asterisk" / "amd-fast.conf"
    fast = parse_amd_conf(conf.read_text(), source=str(conf))
    assert fast != AmdParams()
    assert fast.total_analysis_time < 2000


def test_the_short_hello_variant_takes_a_short_hello_sooner_and_only_that() -> None:
    from bench.amd_short_hello import ShortHelloDetector
    from tests.unit.speech.test_amd_detector import RATE, silence, voice

    def run(*parts: np.ndarray) -> tuple[str, str, int]:
        det = ShortHelloDetector(AmdParams(), short_voice_ms=600, short_silence_ms=200)
        v = det.feed(np.concatenate(parts), RATE) or det.expire()
        return v.status, v.cause, v.audio_ms

    # A 400 ms hello: 200 ms of silence after it says HUMAN (app_amd's rules would wait 500).
    assert run(silence(300), voice(400), silence(1000)) == ("HUMAN", "HUMAN-200-200", 900)
    # 800 ms of voice is past the short hello: the full after-greeting silence again.
    assert run(silence(300), voice(800), silence(1000)) == ("HUMAN", "HUMAN-500-500", 1600)
