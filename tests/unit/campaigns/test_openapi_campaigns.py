"""The campaign schemas of engine/api/openapi.json are what scripts/openapi_campaigns.py
generates from the pydantic models: a model changed without regenerating fails here."""

from __future__ import annotations

import jsonschema
import pytest

from engine.api.openapi import live_document, openapi_document
from engine.campaigns.regions import REGIONS
from scripts.openapi_campaigns import campaign_schemas, updated


@pytest.mark.parametrize("name", sorted(campaign_schemas()))
def test_committed_schema_is_the_generated_one(name: str) -> None:
    committed = openapi_document()["components"]["schemas"].get(name)
    assert committed == campaign_schemas()[name], (
        f"components.schemas.{name} differs from the models: run scripts/openapi_campaigns.py"
    )


def test_the_whole_document_is_what_the_script_writes() -> None:
    doc = openapi_document()
    assert updated(doc) == doc


def test_patch_refuses_null_for_required_fields_only() -> None:
    schemas = campaign_schemas()
    patch = schemas["CampaignPatch"]["properties"]
    required = set(schemas["CampaignSpec"]["required"])
    assert required == {"trunk_group", "queue"}
    for name, prop in patch.items():
        nullable = {"type": "null"} in prop.get("anyOf", [])
        assert nullable is (name not in required), name


def test_served_document_names_configured_groups_and_queues_in_the_patch() -> None:
    doc = live_document(switches=["s"], trunks=["t"], groups=["g2", "g1"], queues=["q"])
    patch = doc["components"]["schemas"]["CampaignPatch"]["properties"]
    assert patch["trunk_group"]["enum"] == ["g1", "g2"]
    assert patch["queue"]["enum"] == ["q"]


def test_regions_are_the_ones_phonenumbers_knows() -> None:
    region = campaign_schemas()["Region"]
    assert set(region["enum"]) == REGIONS
    assert "GB" in REGIONS and "UK" not in REGIONS and "AA" not in REGIONS


def test_configured_names_bind_requests_not_stored_campaigns() -> None:
    doc = live_document(switches=["s"], trunks=["t"], groups=["g"], queues=["q"])
    schemas = doc["components"]["schemas"]
    create = schemas["CampaignCreate"]["properties"]["spec"]["allOf"]
    assert create[1]["properties"]["queue"]["enum"] == ["q"]
    # A campaign another engine stored with its own names is still a valid response.
    assert "enum" not in schemas["CampaignSpec"]["properties"]["queue"]


def test_the_loaded_ivr_flows_bind_a_requests_machine_flow() -> None:
    # A create or patch naming another flow is 400 invalid-campaign (engine/campaigns/service.py):
    # the served document must not offer it, or a schema-valid request would be refused.
    doc = live_document(
        switches=["s"], trunks=["t"], groups=["g"], queues=["q"], flows=["vm", "leave-message"]
    )
    schemas = doc["components"]["schemas"]
    resolver = {"components": doc["components"]}

    def ok(schema: dict[str, object], body: object) -> bool:
        try:
            jsonschema.validate(body, {**schema, **resolver})
        except jsonschema.ValidationError:
            return False
        return True

    create = schemas["CampaignCreate"]
    spec = {"trunk_group": "g", "queue": "q"}
    for flow, valid in (("leave-message", True), (None, True), ("nope", False)):
        body = {"name": "c", "spec": {**spec, "amd": {"machine_flow": flow}}}
        assert ok(create, body) is valid, flow
    patch = schemas["CampaignPatch"]
    assert ok(patch, {"amd": {"machine_flow": "vm"}})
    assert not ok(patch, {"amd": {"machine_flow": "nope"}})
    # Stored campaigns keep what they hold (another engine may have other flows).
    assert "enum" not in str(schemas["CampaignAmdSettings"]["properties"]["machine_flow"])
