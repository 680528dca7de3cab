"""Reload: IVR flows are re-read (SIGHUP, POST /v1/admin/reload, or by watching
the directory); a bad file is reported with file:line and its previous good
version stays live."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.api.openapi_check import check
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config, running_engine, wait_for

GOOD = "name: menu\nsteps:\n  - answer\n  - play: hello-world\n  - hangup\n"
BAD = "name: menu\nsteps:\n  - answer\n  - gather:\n      into: pin\n      max_digits: lots\n"


async def test_reload_keeps_last_good_flow_and_watcher_picks_up_changes(
    pg_dsn: str, redis_url: str, store_data_dir: Path, tmp_path: Path
) -> None:
    flows = tmp_path / "ivr"
    flows.mkdir()
    (flows / "menu.yaml").write_text(GOOD)
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"reload:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-reload",
            ami_port=ami.port,
            agi_bind_port=0,
            ivr_dir=flows,
            ivr_watch_interval_s=0.2,
        )
        async with running_engine(cfg) as (engine, client):
            assert engine.ivr is not None
            status, report, _ = await client.request("POST", "/admin/reload")
            assert status == 200
            check("/v1/admin/reload", "post", 200, report)
            assert report["ivr"] == {"flows": ["menu"], "errors": []}

            (flows / "menu.yaml").write_text(BAD)
            status, report, _ = await client.request("POST", "/admin/reload")
            assert status == 200
            assert report["ivr"]["flows"] == ["menu"], "the last good version stays live"
            (error,) = report["ivr"]["errors"]
            assert error.startswith(f"{flows / 'menu.yaml'}:6: ")
            assert "max_digits: expected an integer 1-32 (got 'lots')" in error
            assert len(engine.ivr.flows["menu"].steps) == 3

            # The directory watcher reloads on its own.
            (flows / "other.yaml").write_text(GOOD.replace("menu", "other"))
            await wait_for(lambda: "other" in engine.ivr.flows, timeout_s=10, what="watcher")

            status, body, _ = await client.request("POST", "/admin/reload", token=None)
            assert (status, body["error_id"]) == (401, "missing-token")


OVERFLOW = """
[[queues]]
name = "sales"
[[queues.overflow]]
after_s = 60.0
ivr_flow = "voicemail"
"""


async def test_a_config_naming_a_flow_that_is_not_loaded_is_reported(
    pg_dsn: str, redis_url: str, store_data_dir: Path, tmp_path: Path
) -> None:
    """The shipped config's sales overflow named a flow that did not ship: its callers were
    hung up after a minute's wait and nothing said so until then."""
    flows = tmp_path / "ivr"
    flows.mkdir()
    (flows / "menu.yaml").write_text(GOOD)
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"reload:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-reload-refs",
            ami_port=ami.port,
            agi_bind_port=0,
            ivr_dir=flows,
            extra=OVERFLOW,
        )
        async with running_engine(cfg) as (_, client):
            status, report, _ = await client.request("POST", "/admin/reload")
            assert status == 200
            check("/v1/admin/reload", "post", 200, report)
            assert report["ivr"]["warnings"] == [
                "queues[0].overflow[0].ivr_flow: no IVR flow named 'voicemail' is loaded; "
                "callers of queue 'sales' sent there after 60 s would be hung up"
            ]
            (flows / "voicemail.yaml").write_text(GOOD.replace("menu", "voicemail"))
            status, report, _ = await client.request("POST", "/admin/reload")
            assert report["ivr"] == {"flows": ["menu", "voicemail"], "errors": []}
