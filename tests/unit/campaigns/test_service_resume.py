"""Which stored campaigns an engine resumes, and what a storage fault does to a runner.

Found by a drill on a shared database: an engine resumed every campaign other engines had
left running (their queues and trunk groups are not in its configuration), and a runner that
met a storage fault died for good, so a PostgreSQL blip stopped a campaign until a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from engine.campaigns import service as service_module
from engine.campaigns.errors import InvalidCampaign
from engine.campaigns.model import CampaignConfig, CampaignSpec, CampaignState
from engine.campaigns.runner import RunnerDeps
from engine.campaigns.service import CampaignService
from engine.campaigns.store import CampaignRow, CampaignStore
from engine.pbx.base import DialplanTarget
from engine.store.errors import StoreUnavailable
from tests.campaign_fakes import Clock, FakeAcd, FakeCalls, FakeLeases, ListSink, NoChannels

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def row(campaign_id: str, *, queue: str = "sales", trunk_group: str = "carrier") -> CampaignRow:
    return CampaignRow(
        campaign_id=campaign_id,
        spec=CampaignSpec(trunk_group=trunk_group, queue=queue),
        state=CampaignState.RUNNING,
        fence=0,
        created_at=NOW,
        updated_at=NOW,
        version=1,
    )


class FakeStore:
    """The store calls the service and a runner make before dialling; ``take_fence``
    fails as often as ``fence_faults`` says, then refuses (the runner then stops cleanly)."""

    def __init__(
        self, rows: list[CampaignRow], fence_faults: int = 0, pause_on_fault: bool = False
    ) -> None:
        self.rows = {r.campaign_id: r for r in rows}
        self.fence_faults = fence_faults
        self.pause_on_fault = pause_on_fault
        self.fenced: list[str] = []
        self.reads = 0

    async def all(self) -> list[CampaignRow]:
        return list(self.rows.values())

    async def get(self, campaign_id: str) -> CampaignRow | None:
        self.reads += 1
        return self.rows.get(campaign_id)

    async def fetch(self, what: str, sql: str, *args: Any) -> list[dict[str, Any]]:
        # The abandon baseline's counts (engine/campaigns/stats.py period_counts): none yet.
        return [
            dict.fromkeys(("dials", "answers", "human", "machine", "abandoned", "connected"), 0)
        ]

    async def take_fence(self, campaign_id: str, token: int) -> bool:
        self.fenced.append(campaign_id)
        if self.fence_faults:
            self.fence_faults -= 1
            if self.pause_on_fault:
                # Paused (by another engine or the API) while the runner is down.
                self.rows[campaign_id] = replace(self.rows[campaign_id], state=CampaignState.PAUSED)
            raise StoreUnavailable(f"postgres error while fencing campaign {campaign_id}")
        return False


def make_service(
    store: FakeStore, ivr_flows: Callable[[], Collection[str] | None] | None = None
) -> CampaignService:
    clock = Clock(NOW.timestamp())
    deps = RunnerDeps(
        store=cast(CampaignStore, store),
        hopper=cast(Any, None),
        calls=FakeCalls(clock),
        acd=FakeAcd(clock),
        switches=NoChannels(set()),
        leases=FakeLeases(),
        records=ListSink(),
        events=ListSink(),
        translate=lambda group, phone: phone,
        amd_then=lambda _params: DialplanTarget("engine-amd", "s", 1),
        safe_harbour=lambda switch: DialplanTarget("engine-safe-harbour", "s", 1),
        clock=clock,
        trunk_groups={"carrier"},
        ivr_flows=ivr_flows,
    )
    return CampaignService(deps)


async def wait_for(condition: Any, what: str, timeout_s: float = 5.0) -> None:
    """Poll a fake's state: the fakes have no event to wait on."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_only_campaigns_this_engine_can_run_are_resumed() -> None:
    store = FakeStore(
        [
            row("ours"),
            row("other-queue", queue="support"),
            row("other-group", trunk_group="elsewhere"),
        ]
    )
    service = make_service(store)
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: "ours" in store.fenced, "our campaign fenced")
        # The other two were judged at the same time as ours: they were never launched.
        assert store.fenced == ["ours"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class FlakyListStore(FakeStore):
    """``all`` fails ``list_faults`` times, as PostgreSQL timing out at the engine's start."""

    def __init__(self, rows: list[CampaignRow], list_faults: int) -> None:
        super().__init__(rows)
        self.list_faults = list_faults

    async def all(self) -> list[CampaignRow]:
        if self.list_faults:
            self.list_faults -= 1
            raise StoreUnavailable("postgres error while listing campaigns: timed out")
        return await super().all()


async def test_a_storage_fault_at_start_delays_the_resume_and_does_not_end_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the plug-pull chaos harness on a starved host: the first read of the stored
    # campaigns timed out, the service's task raised, and the engine's task group ended the
    # engine at start.
    monkeypatch.setattr(service_module, "RUNNER_RETRY_S", 0.01)
    store = FlakyListStore([row("ours")], list_faults=2)
    service = make_service(store)
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: "ours" in store.fenced or task.done(), "our campaign resumed")
        assert not task.done(), task.exception()
        assert store.list_faults == 0 and store.fenced == ["ours"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class FlakyCreateStore(FakeStore):
    """``create`` fails ``create_faults`` times (PostgreSQL timing out at the engine's start)."""

    def __init__(self, create_faults: int) -> None:
        super().__init__([])
        self.create_faults = create_faults

    async def create(self, campaign_id: str, spec: CampaignSpec) -> CampaignRow | None:
        if self.create_faults:
            self.create_faults -= 1
            raise StoreUnavailable(f"postgres error while creating campaign {campaign_id}")
        if campaign_id in self.rows:
            return None
        made = replace(row(campaign_id), spec=spec, state=CampaignState.DRAFT)
        self.rows[campaign_id] = made
        return made


async def test_configured_campaigns_not_created_at_start_are_created_once_storage_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found auditing the start's storage reads (after 2ce7c80): engine.toml's campaigns,
    # created at start, were missing until the next restart when PostgreSQL timed out then.
    monkeypatch.setattr(service_module, "SWEEP_S", 0.01)
    store = FlakyCreateStore(create_faults=1)
    service = make_service(store)
    configs = [
        CampaignConfig(name="spring", spec=CampaignSpec(trunk_group="carrier", queue="sales"))
    ]
    with pytest.raises(StoreUnavailable):
        await service.seed(configs)
    service.seed_later(configs)  # what the composition root does then
    store.create_faults = 2
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: "spring" in store.rows or task.done(), "the campaign created")
        assert not task.done(), task.exception()
        assert store.create_faults == 0
        assert store.rows["spring"].state is CampaignState.DRAFT
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_runner_stopped_by_a_storage_fault_is_started_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "RUNNER_RETRY_S", 0.01)
    store = FakeStore([row("ours")], fence_faults=2)
    service = make_service(store)
    task = asyncio.create_task(service.run())
    try:
        # Two faults, two restarts, then the third try reaches the store and stops cleanly.
        await wait_for(lambda: len(store.fenced) == 3, "three fencing attempts")
        assert store.fenced == ["ours", "ours", "ours"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_campaign_paused_meanwhile_is_not_started_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "RUNNER_RETRY_S", 0.01)
    store = FakeStore([row("ours")], fence_faults=1, pause_on_fault=True)
    service = make_service(store)
    task = asyncio.create_task(service.run())
    try:
        # The retry reads the row again and decides at once: a relaunch would show as a runner.
        await wait_for(lambda: store.reads >= 1, "the row read again")
        assert "ours" not in service.runners
        assert store.fenced == ["ours"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class PatchableStore(FakeStore):
    async def update(self, campaign_id: str, **changes: Any) -> CampaignRow | None:
        changes.pop("version", None)
        self.rows[campaign_id] = replace(self.rows[campaign_id], **changes)
        return self.rows[campaign_id]


async def test_a_patch_judges_only_the_names_it_sets() -> None:
    """Found by the API fuzz run: a PATCH that set only the trunk group was refused for the
    stored queue, which another engine's configuration has and this one does not."""
    store = PatchableStore([row("foreign", queue="support")])
    service = make_service(store)
    updated = await service.patch("foreign", {"trunk_group": "carrier", "priority": 3})
    assert (updated["spec"]["trunk_group"], updated["spec"]["priority"]) == ("carrier", 3)
    assert updated["spec"]["queue"] == "support"
    with pytest.raises(InvalidCampaign, match="queue: no queue named 'nope'"):
        await service.patch("foreign", {"queue": "nope"})
    with pytest.raises(InvalidCampaign, match="trunk_group: no trunk group named 'gone'") as err:
        await service.patch("foreign", {"trunk_group": "gone"})
    # Shaped like every other details.problems (they were bare strings here).
    assert err.value.details["problems"] == [
        {"field": "trunk_group", "problem": "no trunk group named 'gone' (known: ['carrier'])"}
    ]


async def test_a_list_item_is_named_with_brackets_like_every_other_problem() -> None:
    # It was spec.window.days.0; the calls API (and JSON Pointer-ish habit) says days[0].
    service = make_service(PatchableStore([row("winter")]))
    with pytest.raises(InvalidCampaign) as err:
        await service.patch("winter", {"window": {"days": ["mon", "monday"]}})
    fields = [p["field"] for p in err.value.details["problems"]]
    assert fields == ["spec.window.days[1]"]
    assert str(err.value).startswith("spec.window.days[1]: Input should be 'mon'")


class CreatingStore(PatchableStore):
    async def create(self, campaign_id: str, spec: CampaignSpec) -> CampaignRow | None:
        self.rows[campaign_id] = replace(row(campaign_id), spec=spec, state=CampaignState.DRAFT)
        return self.rows[campaign_id]


async def test_a_machine_flow_this_engine_has_not_loaded_is_refused_when_named() -> None:
    # A machine sent to no flow is hung up on, with no message left: refused at once, like an
    # unknown queue or trunk group.
    store = CreatingStore([row("stored")])
    service = make_service(store, ivr_flows=lambda: {"leave-message"})
    spec = {"trunk_group": "carrier", "queue": "sales", "amd": {"machine_flow": "leave-mesage"}}
    with pytest.raises(InvalidCampaign) as err:
        await service.create({"name": "winter", "spec": spec})
    assert err.value.details["problems"] == [
        {
            "field": "amd.machine_flow",
            "problem": "no IVR flow named 'leave-mesage' (known: ['leave-message'])",
        }
    ]
    assert "winter" not in store.rows
    with pytest.raises(InvalidCampaign, match=r"amd\.machine_flow: no IVR flow named 'nope'"):
        await service.patch("stored", {"amd": {"machine_flow": "nope"}})
    patched = await service.patch("stored", {"amd": {"machine_flow": "leave-message"}})
    assert patched["spec"]["amd"]["machine_flow"] == "leave-message"
    spec["amd"] = {"machine_flow": "leave-message"}
    assert (await service.create({"name": "winter", "spec": spec}))["id"] == "winter"


async def test_a_stored_machine_flow_is_judged_only_when_a_request_names_it() -> None:
    store = CreatingStore([row("stored")])
    service = make_service(store, ivr_flows=lambda: {"leave-message"})
    store.rows["stored"] = replace(
        store.rows["stored"],
        spec=store.rows["stored"].spec.model_copy(
            update={"amd": store.rows["stored"].spec.amd.model_copy(update={"machine_flow": "x"})}
        ),
    )
    assert (await service.patch("stored", {"priority": 2}))["spec"]["priority"] == 2
    # Flows not known (the IVR not started yet): nothing to judge against.
    unknown = make_service(CreatingStore([row("stored")]), ivr_flows=lambda: None)
    await unknown.patch("stored", {"amd": {"machine_flow": "anything"}})
