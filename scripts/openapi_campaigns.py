"""Regenerate the campaign schemas of engine/api/openapi.json from the pydantic models.

Run after changing engine/campaigns/model.py, schemas.py or regions.py::

    .venv/bin/python scripts/openapi_campaigns.py

tests/unit/api/test_openapi_campaigns.py fails while the committed document differs from what
this script generates, so the two cannot drift.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `engine` importable
    sys.path.insert(0, str(ROOT))

from engine.campaigns.model import CampaignSpec  # noqa: E402
from engine.campaigns.regions import region_schema  # noqa: E402
from engine.campaigns.schemas import DispositionBody  # noqa: E402

DOCUMENT = ROOT / "engine" / "api" / "openapi.json"
REF = "#/components/schemas/"
PATCH_PATH = ("/v1/campaigns/{id}", "patch")
CAMPAIGN_NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$"


def _renamed_refs(node: Any, names: dict[str, str]) -> Any:
    """``node`` with every ``$ref`` to a hoisted definition pointing at its new name."""
    if isinstance(node, dict):
        out = {k: _renamed_refs(v, names) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF) and ref[len(REF) :] in names:
            out["$ref"] = REF + names[ref[len(REF) :]]
        return out
    if isinstance(node, list):
        return [_renamed_refs(v, names) for v in node]
    return node


def _close_patterns(node: Any) -> None:
    """An object given by patternProperties takes no other keys (pydantic leaves it open, the
    server refuses them): say so, or the fuzzer rightly calls the document wrong."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _close_patterns(value)


def _hoist(model: type[BaseModel], name: str, out: dict[str, Any]) -> None:
    """``model``'s schema as ``name``, its $defs as components prefixed ``Campaign``."""
    schema = model.model_json_schema(ref_template=REF + "{model}", mode="validation")
    defs: dict[str, Any] = schema.pop("$defs", {})
    names = {k: k if k.startswith("Campaign") else "Campaign" + k for k in defs}
    for key, value in defs.items():
        out[names[key]] = _renamed_refs(value, names)
    out[name] = _renamed_refs(schema, names)


def _patch(spec: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch of the spec: null puts a field back to its default. A required field
    has no default (null would remove it, which the server refuses), so it is not nullable."""
    patch = copy.deepcopy(spec)
    required = set(patch.pop("required", []))
    patch["title"] = "CampaignPatch"
    patch["properties"] = {
        k: v if k in required else {"anyOf": [v, {"type": "null"}]}
        for k, v in patch["properties"].items()
    }
    patch["description"] = (
        "A JSON merge patch of the campaign's settings: the fields given replace (objects merge);"
        " null puts a field back to its default (trunk_group and queue have none: not null)."
    )
    return patch


def campaign_schemas() -> dict[str, Any]:
    """The schemas this script owns, by component name, as the document must hold them."""
    out: dict[str, Any] = {"Region": region_schema()}
    _hoist(CampaignSpec, "CampaignSpec", out)
    out["CampaignSpec"]["description"] = (
        "Campaign settings (docs/campaigns.md has every field and its default)."
        " Unknown fields are refused."
    )
    out["CampaignPatch"] = _patch(out["CampaignSpec"])
    out["CampaignCreate"] = {
        "type": "object",
        "required": ["name", "spec"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": CAMPAIGN_NAME_PATTERN},
            "spec": {"$ref": REF + "CampaignSpec"},
        },
    }
    _hoist(DispositionBody, "DispositionRequest", out)
    _close_patterns(out)
    return out


def updated(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with this script's schemas and the patch operation's body written in."""
    doc = copy.deepcopy(doc)
    doc["components"]["schemas"].update(campaign_schemas())
    path, method = PATCH_PATH
    body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
    body["schema"] = {"$ref": REF + "CampaignPatch"}
    return doc


def main() -> None:
    doc = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    new = updated(doc)
    DOCUMENT.write_text(json.dumps(new, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(sorted(campaign_schemas()))


if __name__ == "__main__":
    main()
