"""``python -m engine simulate SCENARIO --campaign NAME`` on a campaign stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from engine.campaigns.model import CampaignSpec
from engine.cli import main
from engine.store.pg.pool import PgStore
from tests.harness import ROOT

SCENARIO = ROOT / "bench" / "campaign_scenarios" / "live-campaign.json"


async def test_dry_run_of_a_stored_campaign(
    pg_store: PgStore, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"sim-{uuid.uuid4().hex[:8]}"
    spec = CampaignSpec.model_validate(
        {
            "trunk_group": "g",
            "queue": "q",
            "mode": "progressive",
            "window": {"start": "09:00", "end": "17:00", "days": ["wed"]},
        }
    )
    pool = pg_store.pool
    await pool.execute(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2::jsonb)",
        name,
        spec.model_dump_json(),
    )
    phones = [f"+4420794{60000 + i}" for i in range(12)]
    await pool.executemany(
        "INSERT INTO contacts (campaign_id, phone, tz, priority) VALUES ($1, $2, $3, $4)",
        [(name, p, "Europe/London", i % 3) for i, p in enumerate(phones)],
    )
    await pool.execute("INSERT INTO dnc (campaign_id, phone) VALUES ($1, $2)", name, phones[0])
    monkeypatch.setenv("ENGINE_PG_DSN", pg_dsn)
    out = tmp_path / "dry.json"
    # The CLI runs its own event loop: off this test's loop.
    code = await asyncio.to_thread(
        main,
        [
            "simulate",
            str(SCENARIO),
            "--campaign",
            name,
            "--config",
            str(tmp_path / "absent.toml"),
            "--start",
            "2026-12-02T08:30:00+00:00",
            "--json",
            str(out),
        ],
    )
    assert code == 0
    (run,) = json.loads(out.read_text())["runs"]
    dialled = {d["phone"] for d in run["first_dials"]}
    assert phones[0] not in dialled  # on the campaign's DNC list
    # Nothing before the window opens at 09:00 (30 min into the run), priority first.
    assert run["first_dials"][0]["at_s"] >= 1800
    first = run["first_dials"][0]["phone"]
    assert phones.index(first) % 3 == 2
    # Nothing was written: the stored contacts are untouched.
    states = {
        r["state"]
        for r in await pool.fetch("SELECT state FROM contacts WHERE campaign_id = $1", name)
    }
    assert states == {"ready"}


def test_unknown_campaign_is_a_clear_error(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENGINE_PG_DSN", pg_dsn)
    code = main(
        ["simulate", str(SCENARIO), "--campaign", "nope", "--config", str(tmp_path / "x.toml")]
    )
    assert code == 2
    assert "no campaign named 'nope'" in capsys.readouterr().err


async def test_the_issue_command_without_a_scenario_file(
    pg_store: PgStore, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m engine simulate --campaign NAME``: the default far ends and agents."""
    name = f"sim-{uuid.uuid4().hex[:8]}"
    spec = CampaignSpec.model_validate({"trunk_group": "g", "queue": "q", "mode": "progressive"})
    await pg_store.pool.execute(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2::jsonb)",
        name,
        spec.model_dump_json(),
    )
    await pg_store.pool.executemany(
        "INSERT INTO contacts (campaign_id, phone, tz) VALUES ($1, $2, 'Europe/London')",
        [(name, f"+4420794{61000 + i}") for i in range(4)],
    )
    monkeypatch.setenv("ENGINE_PG_DSN", pg_dsn)
    out = tmp_path / "dry.json"
    argv = ["simulate", "--campaign", name, "--config", str(tmp_path / "absent.toml")]
    argv += ["--start", "2026-12-02T10:00:00+00:00", "--json", str(out)]
    assert await asyncio.to_thread(main, argv) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["first_dials"]  # the window is open: the list is dialled


def test_the_default_scenario_is_the_benchs_live_campaign() -> None:
    from engine.campaigns.simulate_cli import DEFAULT_SCENARIO

    bench = json.loads(SCENARIO.read_text())
    assert {k: v for k, v in DEFAULT_SCENARIO.items() if k != "description"} == {
        k: v for k, v in bench.items() if k != "description"
    }


def test_a_scenario_is_still_required_without_campaign(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["simulate"])
    assert "a scenario file is required" in capsys.readouterr().err
