"""Every JSON request body of the docs (``curl ... -d '{...}'``, ``METHOD /v1/path {...}`` lines,
a JSON object in a ``| POST | /v1/... |`` row or after a `` `PATCH /v1/...` `` in prose) is valid
for its method and path in the OpenAPI document the server serves: ``live_document`` filled in
from the sandbox's engine.toml, the configuration the docs' examples run against (`make run`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from engine.api.openapi import live_document
from engine.config import load_config
from tests.doc_examples import ROOT, RequestExample, check_request, request_examples

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = request_examples(DOCS)


@functools.cache
def served() -> dict[str, Any]:
    """What ``GET /v1/openapi.json`` answers on the sandbox (``app_document``'s arguments)."""
    cfg = load_config(str(ROOT / "telephony-config" / "engine.toml"))
    return live_document(
        switches=[s.name for s in cfg.switches],
        trunks=[t.name for t in cfg.trunks],
        groups=[g.name for g in cfg.trunk_groups],
        queues=sorted(q.name for q in cfg.queues),
        agents=[a.id for a in cfg.agents],
    )


def test_the_docs_hold_the_examples_this_test_is_about() -> None:
    files = {e.where.split(":")[0] for e in EXAMPLES}
    assert {"docs/api.md", "docs/campaigns.md", "README.md"} <= files
    assert len(EXAMPLES) >= 15
    methods = {(e.method, e.path) for e in EXAMPLES}
    assert ("POST", "/v1/campaigns") in methods and ("POST", "/v1/calls") in methods


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_every_request_body_is_valid_for_its_operation(example: RequestExample) -> None:
    problems = check_request(served(), example)
    assert not problems, "\n".join(problems)


# ------------------------------------------------- the checker itself, on broken copies


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "doc.md"
    path.write_text(text, encoding="utf-8")
    found = request_examples([path])
    assert found, "the extractor found no example"
    return [p for e in found for p in check_request(served(), e)]


def test_a_wrong_type_in_a_multiline_curl_body_fails_at_its_line(tmp_path: Path) -> None:
    # The campaigns.md tour with max_lines as a string, the body over three lines.
    (problem,) = _problems(
        tmp_path,
        'Intro\n\n```sh\nH=x\ncurl -s -X POST $API/campaigns -H "$H" \\\n'
        "  -H 'Content-Type: application/json' -d '{\n"
        '  "name": "tour", "spec": {"trunk_group": "sandbox-outbound",\n'
        '  "queue": "sales", "max_lines": "1"}}\'\n```\n',
    )
    assert problem.startswith(f"{tmp_path / 'doc.md'}:5: POST /v1/campaigns: ")
    assert "'1' is not of type 'integer'" in problem


def test_an_unknown_field_a_queue_not_configured_and_not_json_fail(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        "```sh\n"
        'curl ... -d \'{"mode": "listen", "endpont": "s1"}\' .../v1/agents/alice/spy\n'
        'curl -X POST $API/calls -d \'{"to": "1001", trunk: "self-trunk"}\'\n'
        "```\n\n```\n"
        'POST /v1/campaigns  {"name": "r", "spec": {"trunk_group": "sandbox-outbound",\n'
        '                     "queue": "no-such-queue"}}\n```\n',
    )
    assert len(problems) == 4, problems
    required, spy, call, campaign = problems
    assert ":2: POST /v1/agents/{agent_id}/spy: body: 'endpoint' is a required" in required
    assert ":2: POST /v1/agents/{agent_id}/spy: " in spy and "'endpont' was unexpected" in spy
    assert ":3: not JSON" in call
    assert ":7: POST /v1/campaigns: " in campaign and "no-such-queue" in campaign


def test_a_path_or_method_the_document_lacks_fails(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        "```sh\ncurl -X POST $API/agent/alice/login -d '{}'\n"
        "curl -X PUT $API/campaigns/x -d '{}'\n```\n"
        '| POST | `/v1/agents/{agent_id}/pause` | `{"reason": 5}`: pauses |\n'
        'Then `PATCH /v1/recordings/{id}` `{"legal_hold": "no"}`.\n',
    )
    assert len(problems) == 4, problems
    assert "/v1/agent/alice/login: no such path" in problems[0]
    assert "PUT /v1/campaigns/{id}: no such operation" in problems[1]
    assert ":5: POST /v1/agents/{agent_id}/pause: reason: " in problems[2]
    assert ":6: PATCH /v1/recordings/{recording_id}: legal_hold: " in problems[3]
