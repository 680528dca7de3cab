"""A campaign chooses its AMD parameters (amd.profile and amd.params): validated with the field
named, the default unchanged (the switch's amd.conf), and what its calls carry."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from engine.campaigns.errors import InvalidCampaign
from engine.campaigns.model import AmdSettings, CampaignConfig, CampaignSpec
from engine.speech.amd import FAST, AmdOverrides, AmdParams
from tests.unit.campaigns.test_service_resume import PatchableStore, make_service, row


def amd(**values: Any) -> AmdSettings:
    """As the API reads a body: strict JSON types."""
    body = json.dumps({"trunk_group": "g", "queue": "q", "amd": values})
    return CampaignSpec.model_validate_json(body, strict=True).amd


def test_the_default_is_the_switchs_own_parameters() -> None:
    assert CampaignSpec(trunk_group="g", queue="q").amd.overrides() is None
    assert amd().overrides() is None
    assert amd(profile="switch", params={}).overrides() is None


def test_profiles_pin_the_preset_files_values() -> None:
    fast = amd(profile="fast").overrides()
    assert fast is not None and fast.apply(AmdParams()) == FAST
    assert fast.amd_arguments() == "2500,1000,200,1900,100,50,3,512,5000"
    accurate = amd(profile="accurate").overrides()
    assert accurate is not None and accurate.apply(FAST) == AmdParams()


def test_single_keys_go_over_the_profile() -> None:
    assert amd(params={"after_greeting_silence": 300}).overrides() == AmdOverrides(
        after_greeting_silence=300
    )
    mixed = amd(profile="fast", params={"greeting": 900, "total_analysis_time": 1800.0})
    got = mixed.overrides()
    assert got is not None
    assert (got.greeting, got.total_analysis_time, got.after_greeting_silence) == (900, 1800, 200)


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ({"profile": "quick"}, "amd.profile", "'switch', 'accurate' or 'fast'"),
        ({"params": {"greting": 900}}, "amd.params", "unknown AMD parameter 'greting'"),
        ({"params": {"greeting": 99}}, "amd.params.greeting", "greater than or equal to 100"),
        ({"params": {"total_analysis_time": 6000}}, "amd.params.total_analysis_time", "5000"),
        ({"params": {"greeting": "900"}}, "amd.params.greeting", "integer"),
        ({"params": {"greeting": 900.5}}, "amd.params.greeting", "integer"),
        (
            {"params": {"maximum_number_of_words": True}},
            "amd.params.maximum_number_of_words",
            "integer",
        ),
        ({"params": {"silence_threshold": 40000}}, "amd.params.silence_threshold", "32767"),
    ],
)
def test_bad_settings_name_the_field(values: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        amd(**values)
    (problem,) = err.value.errors()
    assert ".".join(str(p) for p in problem["loc"]).startswith(field)
    assert fragment in problem["msg"]


def test_engine_toml_takes_the_same_settings() -> None:
    table = tomllib.loads(
        """
name = "winter-sale"
[spec]
trunk_group = "g"
queue = "q"
[spec.amd]
profile = "fast"
params = { greeting = 900 }
"""
    )
    config = CampaignConfig.model_validate(table)
    got = config.spec.amd.overrides()
    assert got is not None and (got.greeting, got.after_greeting_silence) == (900, 200)


async def test_a_patch_sets_the_profile_and_single_keys() -> None:
    store = PatchableStore([row("winter")])
    service = make_service(store)
    updated = await service.patch("winter", {"amd": {"profile": "fast"}})
    assert updated["spec"]["amd"]["profile"] == "fast"
    assert updated["spec"]["amd"]["enabled"] is True  # objects merge
    # A key over the profile, then back to the profile's value with null (merge patch).
    updated = await service.patch("winter", {"amd": {"params": {"greeting": 900}}})
    assert (updated["spec"]["amd"]["profile"], updated["spec"]["amd"]["params"]["greeting"]) == (
        "fast",
        900,
    )
    updated = await service.patch("winter", {"amd": {"params": {"greeting": None}}})
    assert updated["spec"]["amd"]["params"]["greeting"] is None
    assert store.rows["winter"].spec.amd.overrides() == AmdOverrides.of(FAST)
    with pytest.raises(InvalidCampaign, match=r"spec\.amd\.profile: Input should be"):
        await service.patch("winter", {"amd": {"profile": "quick"}})
    with pytest.raises(InvalidCampaign, match="unknown AMD parameter 'greting'"):
        await service.patch("winter", {"amd": {"params": {"greting": 1}}})
    assert store.rows["winter"].spec.amd.profile == "fast"  # refused patches changed nothing
