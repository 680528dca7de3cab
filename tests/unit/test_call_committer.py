"""The state committer and the live table of the calls service, alone:
no switch, no Redis, no PostgreSQL (the registry mirror is never run and the
outbox lanes are never drained, so nothing here can wait on storage)."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.calls.cdr import CdrWriter
from engine.calls.commands import OriginateCommand
from engine.calls.committer import StateCommitter
from engine.calls.fsm import apply_event, apply_input
from engine.calls.live import GroupCall, LiveCalls
from engine.calls.mirror import RegistryMirror
from engine.calls.model import Call, CallState
from engine.core.clock import to_datetime
from engine.pbx.base import HungUp, Park, Ringing
from engine.store.outbox import Journal, Lane, Record
from engine.telemetry.metrics import Metrics
from engine.trunks.planner import CallPlan


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        metrics = Metrics()

        async def never(records: Any) -> None:
            raise AssertionError("the committer must not deliver anything itself")

        self.events = Lane(Journal(tmp_path, "events"), never, metrics)
        self.cdr_lane = Lane(Journal(tmp_path, "cdrs"), never, metrics)
        for lane in (self.events, self.cdr_lane):
            lane.open()
        # Never run: its Redis side is not needed to commit.
        self.mirror = RegistryMirror(None, None, metrics)  # type: ignore[arg-type]
        self.live = LiveCalls()
        self.ended: list[Call] = []
        self.metrics = metrics
        self.committer = StateCommitter(
            self.live,
            mirror=self.mirror,
            events=self.events,
            cdrs=CdrWriter(None, self.cdr_lane),  # type: ignore[arg-type]
            metrics=metrics,
            now=lambda: 200.0,
            on_end=self._on_end,
        )

    def _on_end(self, call: Call) -> Call:
        self.ended.append(call)
        return call.evolve(created_at=105.0)  # the row as the last attempt's

    def published(self) -> list[dict[str, Any]]:
        return [r.payload for r in self._records(self.events)]

    def cdrs(self) -> list[dict[str, Any]]:
        return [r.payload["cdr"] for r in self._records(self.cdr_lane)]

    @staticmethod
    def _records(lane: Lane) -> list[Record]:
        return lane.journal.peek(lane.journal.depth)

    def close(self) -> None:
        for lane in (self.events, self.cdr_lane):
            lane.journal.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def _call(state: CallState = CallState.DIALING) -> Call:
    return Call("call-1", "sw", state, "1001", {"kind": "park"}, 100.0, endpoint="phone-1")


def test_commit_cannot_wait_on_storage() -> None:
    # The durability design: a state change is decided and handed over in
    # memory. A coroutine here could (one day) await Redis or PostgreSQL.
    for name in ("commit", "save", "publish", "publish_state", "write_cdr"):
        assert not inspect.iscoroutinefunction(getattr(StateCommitter, name)), name


def test_a_step_that_changes_state_is_kept_mirrored_and_published(rig: Rig) -> None:
    call = _call()
    rig.live.put(call)
    rig.committer.commit(call, apply_input(call, "Ringing", 101.0), "Ringing")
    assert rig.live.get("call-1") is not None
    assert rig.live.get("call-1").state is CallState.RINGING  # type: ignore[union-attr]
    assert [(e["type"], e["state"], e["previous"]) for e in rig.published()] == [
        ("CallStateChanged", "ringing", "dialing")
    ]
    assert rig.cdrs() == []
    # A duplicate Ringing changes nothing: kept, but not published again.
    ringing = rig.live.get("call-1")
    assert ringing is not None
    rig.committer.commit(ringing, apply_input(ringing, "Ringing", 102.0), "Ringing")
    assert len(rig.published()) == 1


def test_a_driver_event_goes_ahead_of_the_state_change_it_caused(rig: Rig) -> None:
    call = _call()
    rig.live.put(call)
    ringing = Ringing(switch="sw", call_id="call-1", ts=101.0)
    rig.committer.commit(call, apply_event(call, ringing, 101.0), "Ringing", ringing)
    hungup = HungUp(switch="sw", call_id="call-1", ts=110.0, cause=16)
    ringing_call = rig.live.get("call-1")
    assert ringing_call is not None
    rig.committer.commit(ringing_call, apply_event(ringing_call, hungup, 110.0), "HungUp", hungup)
    assert [(e["type"], e.get("state")) for e in rig.published()] == [
        ("Ringing", None),
        ("CallStateChanged", "ringing"),
        ("HungUp", None),
        ("CallStateChanged", "ended"),
    ]
    # Journalled as one line per record, as put() of each would.
    lines = rig.events.journal.path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4]
    assert len(rig.cdrs()) == 1


def test_an_illegal_input_is_counted_and_changes_nothing(rig: Rig) -> None:
    call = _call(CallState.CREATED)
    rig.live.put(call)
    rig.committer.commit(call, apply_input(call, "Bridged", 101.0), "Bridged")
    assert rig.live.get("call-1") == call.evolve(illegal_transitions=call.illegal_transitions + 1)
    assert rig.published() == []
    count = rig.metrics.illegal_transitions.labels("created", "Bridged")._value.get()
    assert count == 1


async def test_the_end_writes_the_cdr_then_forgets_the_call_everywhere(rig: Rig) -> None:
    call = _call(CallState.ANSWERED).evolve(answered_at=110.0, trunk_group="g", attempt=2)
    rig.live.put(call)
    rig.live.groups["call-1"] = GroupCall(
        cmd=OriginateCommand(to="1001", then=Park(), trunk_group="g"),
        plan=CallPlan(call_id="call-1", group="g", created_at=100.0),
        legs={1: "call-1", 2: "leg-2"},
    )
    rig.live.add_leg("leg-2", "call-1")
    lock = rig.live.lock("call-1")
    await rig.committer.feed("call-1", "HungUp", cause=16)
    assert [c.call_id for c in rig.ended] == ["call-1"]
    # The CDR row is the one on_end returned, written before the end is published.
    assert [(r["call_id"], r["final_state"], r["cause"]) for r in rig.cdrs()] == [
        ("call-1", "ended", 16)
    ]
    assert rig.cdrs()[0]["started_at"] == {"__dt__": to_datetime(105.0).isoformat()}
    assert rig.published()[-1]["state"] == "ended"
    assert "call-1" not in rig.live and rig.live.groups == {}
    assert rig.live.owner("leg-2") == "leg-2"  # no longer routed to the call
    assert rig.live.lock("call-1") is not lock  # the old lock was dropped
    ended = rig.mirror.recent_ended("call-1")
    assert ended is not None and ended.state is CallState.ENDED


async def test_feed_ignores_an_input_about_an_attempt_that_is_over(rig: Rig) -> None:
    call = _call().evolve(leg_id="leg-2")
    rig.live.put(call)
    await rig.committer.feed("call-1", "originate_accepted", leg="call-1")  # attempt 1's
    assert rig.live.get("call-1") == call
    await rig.committer.feed("call-1", "Answered", leg="leg-2")
    assert rig.live.get("call-1").state is CallState.ANSWERED  # type: ignore[union-attr]


async def test_changes_of_one_call_are_serialized_by_its_lock(rig: Rig) -> None:
    rig.live.put(_call())
    async with rig.live.lock("call-1"):
        task = asyncio.create_task(rig.committer.feed("call-1", "Answered"))
        await asyncio.sleep(0.01)
        assert not task.done()  # waits for the holder of the call's lock
        assert rig.live.get("call-1").state is CallState.DIALING  # type: ignore[union-attr]
    await task
    assert rig.live.get("call-1").state is CallState.ANSWERED  # type: ignore[union-attr]


async def test_the_live_calls_gauge_follows_the_count_on_each_switch(rig: Rig) -> None:
    # Set only when the count moved; it must still say how many calls are live.
    def gauge() -> float | None:
        return rig.metrics.registry.get_sample_value("engine_calls_live", {"switch": "sw"})

    first = _call()
    rig.live.put(first)
    rig.committer.commit(first, apply_input(first, "Ringing", 101.0), "Ringing")
    assert gauge() == 1.0
    second = Call("call-2", "sw", CallState.DIALING, "1002", {"kind": "park"}, 100.0)
    rig.live.put(second)
    rig.committer.commit(second, apply_input(second, "Ringing", 101.0), "Ringing")
    assert gauge() == 2.0
    ringing = rig.live.get("call-1")
    assert ringing is not None
    rig.committer.commit(ringing, apply_input(ringing, "Answered", 102.0), "Answered")
    assert gauge() == 2.0
    await rig.committer.feed("call-1", "HungUp", cause=16)
    assert gauge() == 1.0
    await rig.committer.feed("call-2", "HungUp", cause=16)
    assert gauge() == 0.0
    third = Call("call-3", "sw", CallState.DIALING, "1003", {"kind": "park"}, 100.0)
    rig.live.put(third)
    rig.committer.commit(third, apply_input(third, "Ringing", 103.0), "Ringing")
    assert gauge() == 1.0
