"""Per-call AMD parameters (a campaign's amd.profile / amd.params): the presets are the files
in telephony-config/asterisk, the values are checked, and AMD()'s argument string is app_amd's
positional order."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.speech.amd import (
    FAST,
    KEYS,
    LIMITS,
    PROFILES,
    AmdOverrides,
    AmdParams,
    parse_amd_conf,
)

CONF = Path(__file__).resolve().parents[3] / "telephony-config" / "asterisk"

#: Asterisk 22 ``core show application AMD`` (the sandbox's) and apps/app_amd.c: AMD()'s
#: arguments in order, with the amd.conf key each one overrides.
APP_AMD_ORDER = (
    ("initialSilence", "initial_silence"),
    ("greeting", "greeting"),
    ("afterGreetingSilence", "after_greeting_silence"),
    ("totalAnalysisTime", "total_analysis_time"),
    ("miniumWordLength", "min_word_length"),
    ("betweenWordSilence", "between_words_silence"),
    ("maximumNumberOfWords", "maximum_number_of_words"),
    ("silenceThreshold", "silence_threshold"),
    ("maximumWordLength", "maximum_word_length"),
)


def test_the_presets_are_the_files_beside_amd_conf() -> None:
    assert PROFILES["accurate"] == parse_amd_conf((CONF / "amd.conf").read_text())
    fast = CONF / "amd-fast.conf"
    assert PROFILES["fast"] == FAST == parse_amd_conf(fast.read_text(), source=str(fast))
    assert set(PROFILES) == {"accurate", "fast"}


def test_keys_are_app_amds_positional_arguments_in_order() -> None:
    assert tuple(conf_key for _arg, conf_key in APP_AMD_ORDER) == KEYS
    assert set(LIMITS) == set(KEYS)


def test_the_presets_lie_within_the_limits() -> None:
    for params in PROFILES.values():
        assert AmdOverrides.of(params).apply(AmdParams(greeting=999)) == params


def test_argument_strings() -> None:
    assert AmdOverrides().amd_arguments() == ""  # AMD(): amd.conf throughout
    assert AmdOverrides(greeting=900).amd_arguments() == ",900"
    assert AmdOverrides(after_greeting_silence=200, silence_threshold=512).amd_arguments() == (
        ",,200,,,,,512"
    )
    assert AmdOverrides.of(FAST).amd_arguments() == "2500,1000,200,1900,100,50,3,512,5000"
    assert AmdOverrides(maximum_word_length=4000).amd_arguments() == ",,,,,,,,4000"


def test_apply_replaces_only_the_keys_given() -> None:
    base = AmdParams()
    assert AmdOverrides().apply(base) == base
    got = AmdOverrides(greeting=900, total_analysis_time=1900).apply(base)
    assert (got.greeting, got.total_analysis_time) == (900, 1900)
    assert got.after_greeting_silence == base.after_greeting_silence


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"greeting": 99}, "greeting=99: expected a whole number 100..10000"),
        ({"total_analysis_time": 5001}, "total_analysis_time=5001: expected a whole number"),
        ({"silence_threshold": 0}, "silence_threshold=0"),
        ({"maximum_number_of_words": True}, "maximum_number_of_words=True"),
        ({"greeting": "1000"}, "greeting='1000'"),
        ({"greeting": 1000.0}, "greeting=1000.0"),
        ({"greting": 1000}, "unknown AMD parameter 'greting'"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(
    values: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValueError, match="AMD parameter") as err:
        AmdOverrides.from_dict(values)
    assert fragment in str(err.value)


def test_every_limit_is_enforced_at_both_ends() -> None:
    for key, (lo, hi) in LIMITS.items():
        assert AmdOverrides(**{key: lo}).given() == {key: lo}
        assert AmdOverrides(**{key: hi}).given() == {key: hi}
        for bad in (lo - 1, hi + 1):
            with pytest.raises(ValueError, match=key):
                AmdOverrides(**{key: bad})


def test_the_registry_form_round_trips() -> None:
    fast = AmdOverrides.of(FAST)
    assert AmdOverrides.from_dict(fast.given()) == fast
    assert AmdOverrides.from_dict({}) == AmdOverrides()
