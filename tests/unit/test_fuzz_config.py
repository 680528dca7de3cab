"""The API fuzz run's check configuration (scripts/fuzz_api.py, scripts/schemathesis.toml).

Every schemathesis check must run (what ``--checks all`` means), and the per-operation
exceptions of the config file must apply. ``--checks all`` itself is not passed: in
schemathesis 4.32 a check named on the command line overrides a per-operation
``enabled = false`` from the file, and the stateful phase then reported the DNC lists'
false use-after-free (``DELETE /v1/campaigns/{id}/dnc`` removes numbers; the list still
answers 200).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import schemathesis.specs.openapi.checks  # noqa: F401  (registers the OpenAPI checks)
from schemathesis.checks import CHECKS
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import ChecksConfig

from scripts.fuzz_api import schemathesis_command

CONFIG = Path(__file__).resolve().parents[2] / "scripts" / "schemathesis.toml"
DNC_OPERATIONS = {"removeDnc", "removeCampaignDnc", "listDnc", "listCampaignDnc"}


def _project() -> object:
    return SchemathesisConfig.from_path(str(CONFIG)).projects.default


def test_every_check_is_on_by_default_and_the_command_names_none() -> None:
    project = _project()
    names = set(CHECKS.get_all_names())
    assert {"use_after_free", "not_a_server_error", "positive_data_acceptance"} <= names
    off = sorted(n for n in names if not project.checks.get_by_name(name=n).enabled)  # type: ignore[attr-defined]
    assert off == []
    command = schemathesis_command("http://127.0.0.1:1", 1, [])
    assert "--checks" not in command and str(CONFIG) in command


def test_the_dnc_lists_skip_use_after_free_and_only_them() -> None:
    project = _project()
    disabling = [
        op
        for op in project.operations.operations  # type: ignore[attr-defined]
        if not ChecksConfig.from_hierarchy([op.checks, project.checks])  # type: ignore[attr-defined]
        .get_by_name(name="use_after_free")
        .enabled
    ]
    assert len(disabling) == 1
    sections = tomllib.loads(CONFIG.read_text())["operations"]
    [section] = [s for s in sections if "use_after_free" in s.get("checks", {})]
    assert set(section["include-operation-id"]) == DNC_OPERATIONS


def test_a_body_over_the_limit_is_a_rejection() -> None:
    # 413 body-too-large answers a schema-invalid body too large to read (found by the run).
    project = _project()
    check = project.checks.get_by_name(name="negative_data_rejection")  # type: ignore[attr-defined]
    assert check.enabled and "413" in check.expected_statuses
