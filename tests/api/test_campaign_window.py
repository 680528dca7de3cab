"""A campaign's calling window through ``POST /v1/campaigns``: a misspelt day is one problem,
naming the field and the days expected (it was followed by "Tuple should have at least 1 item
after validation, not 0" when no day of the list was valid)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.conftest import Api

DAYS = "Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'"


async def _create(api: Api, days: list[str]) -> tuple[int, Any]:
    body = {
        "name": f"w{uuid.uuid4().hex[:10]}",
        "spec": {"trunk_group": "outbound", "queue": "sales", "window": {"days": days}},
    }
    status, data, _ = await api.client.request("POST", "/campaigns", json=body)
    return status, data


@pytest.mark.parametrize(
    ("days", "field", "problem"),
    [
        (["tsu"], "spec.window.days[0]", DAYS),
        (["mon", "tsu"], "spec.window.days[1]", DAYS),
        (
            [],
            "spec.window.days",
            "at least one day is needed, of mon, tue, wed, thu, fri, sat, sun",
        ),
    ],
)
async def test_a_bad_day_is_one_problem_naming_the_field(
    api: Api, days: list[str], field: str, problem: str
) -> None:
    status, data = await _create(api, days)
    assert (status, data["error_id"]) == (400, "invalid-campaign"), data
    assert data["details"]["problems"] == [{"field": field, "problem": problem}]
    assert data["message"] == f"{field}: {problem}"
