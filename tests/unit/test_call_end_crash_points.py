"""A call's end, killed after every one of its journal writes (found by the plug-pull chaos
harness, tests/integration/test_chaos_plug.py).

Ending a call writes several journals of the outbox, one ``os.write`` each: the driver
event and, later, the ``ended`` state change (``events``), the CDR (``cdrs``, and the
``call.ended`` webhook its tap makes), the registry's end record (``registry``). A SIGKILL
can fall between any two. At the next start the registry journal decides: a call whose
newest record is still live is adopted again and ended by the resync (its end is written
again, whole); a call whose end record is there is taken as ended and nothing about it is
written again. So the end record must be the last of those writes: a kill after it and
before the ``ended`` state change lost that event for good (seen in a chaos round: a call
on the stream as ``created``, ``dialing`` and nothing after, its CDR stored).

Here the kill is exact: the journals' write raises (a ``BaseException``, which no handler
in the engine takes for a disk error) right after the k-th write of the end reached the
file, for every k; the journals are then read back from disk, as the next start would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.calls.cdr import CdrWriter
from engine.calls.committer import StateCommitter
from engine.calls.fsm import apply_event, apply_input
from engine.calls.live import LiveCalls
from engine.calls.mirror import RegistryMirror, recovered_calls
from engine.calls.model import Call, CallState
from engine.pbx.base import HungUp
from engine.store.outbox import Journal, Lane
from engine.telemetry.metrics import Metrics
from engine.webhooks.service import WebhookTaps


class Killed(BaseException):
    """SIGKILL right after a write: nothing after it runs."""


class Rig:
    def __init__(self, data: Path) -> None:
        metrics = Metrics()

        async def never(records: Any) -> None:
            raise AssertionError("not delivered: the process dies first")

        self.events = Lane(Journal(data, "events"), never, metrics)
        self.cdrs = Lane(Journal(data, "cdrs"), never, metrics)
        self.webhooks = Lane(Journal(data, "webhooks"), never, metrics)
        for lane in (self.events, self.cdrs, self.webhooks):
            lane.open()
        # The CDR lane's tap hands call.ended to the webhooks lane, as engine/wiring does.
        self.cdrs.tap(WebhookTaps(self.webhooks).on_cdr)
        registry = Journal(data, "registry")
        recovered_calls(registry)  # opens it
        self.mirror = RegistryMirror(None, None, metrics, journal=registry)  # type: ignore[arg-type]
        self.live = LiveCalls()
        self.committer = StateCommitter(
            self.live,
            mirror=self.mirror,
            events=self.events,
            cdrs=CdrWriter(None, self.cdrs),  # type: ignore[arg-type]
            metrics=metrics,
            now=lambda: 200.0,
        )


def _answered_call(rig: Rig) -> Call:
    call = Call("call-1", "sw", CallState.ANSWERED, "1001", {"kind": "park"}, 100.0)
    rig.live.put(call)
    rig.committer.save(call)  # the registry journal knows it as answered
    return call


def _end_killed_after(data: Path, k: int, monkeypatch: pytest.MonkeyPatch) -> bool:
    """End the call, the process killed right after the k-th journal write of the end.
    True if the end completed before the k-th write."""
    rig = Rig(data)
    call = _answered_call(rig)
    writes = 0
    real = Journal._write_bytes

    def write_then_maybe_die(journal: Journal, data: bytes) -> int:
        nonlocal writes
        written = real(journal, data)
        writes += 1
        if writes == k:
            raise Killed
        return written

    monkeypatch.setattr(Journal, "_write_bytes", write_then_maybe_die)
    hungup = HungUp(switch="sw", call_id="call-1", ts=110.0, cause=16)
    try:
        rig.committer.commit(call, apply_event(call, hungup, 110.0), "HungUp", hungup)
    except Killed:
        return False
    finally:
        monkeypatch.setattr(Journal, "_write_bytes", real)
    return True


def _on_disk(data: Path, name: str) -> list[dict[str, Any]]:
    journal = Journal(data, name)
    try:
        return [r.payload for r in journal.open()]
    finally:
        journal.close()


def _restart_and_interrupt(data: Path, adopted: Call) -> None:
    """The next start: the call is tracked again, and the first resync finds its channel
    gone (engine/calls/recovery.py)."""
    rig = Rig(data)
    rig.live.put(adopted)
    rig.committer.commit(
        adopted,
        apply_input(adopted, "interrupted", 300.0, cause_text="switch link lost"),
        "interrupted",
    )


def test_a_call_whose_end_record_survives_a_kill_has_its_whole_end_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = 0
    while True:
        k += 1
        data = tmp_path / f"kill-after-{k}"
        completed = _end_killed_after(data, k, monkeypatch)
        registry = {c.call_id: c for c in recovered_calls(Journal(data, "registry"))}
        if registry["call-1"].is_ended:
            # The next start takes the call as ended and writes nothing about it again:
            # everything its end publishes must be on disk already.
            events = _on_disk(data, "events")
            states = [e.get("state") for e in events if e["type"] == "CallStateChanged"]
            assert states == ["ended"], f"killed after write {k}: events {events}"
            assert [e["type"] for e in events] == ["HungUp", "CallStateChanged"]
            assert [r["cdr"]["call_id"] for r in _on_disk(data, "cdrs")] == ["call-1"]
            assert len(_on_disk(data, "webhooks")) == 1, f"killed after write {k}"
        else:
            # Adopted again at the next start and ended by the resync, whole.
            _restart_and_interrupt(data, registry["call-1"])
            events = _on_disk(data, "events")
            ends = [e for e in events if e.get("state") == "ended"]
            assert ends, f"killed after write {k}: no ended event after the restart"
            assert "call-1" in {r["cdr"]["call_id"] for r in _on_disk(data, "cdrs")}
        # One call.ended whatever the kill: the CDR written twice (PostgreSQL keeps the first
        # row) is one webhook event, under one id, that a receiver can deduplicate.
        ids = {w["event_id"] for w in _on_disk(data, "webhooks")}
        assert len(ids) == 1, f"killed after write {k}: call.ended under ids {ids}"
        if completed:
            break
    assert k >= 4  # the driver event, the CDR, its webhook, the state change, the end record


async def test_a_record_kept_by_a_kill_before_its_tap_wrote_gets_its_webhook_at_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CDR of a failover leg (the call goes on, so no registry end record follows), or an
    event a webhook carries: the record is journalled, and the kill comes before its tap's
    write to the webhooks journal. The restart replays the record to its sink; its tap runs
    again then, and the webhook it makes is the one a second tap of the same record would
    make (the same id: stored once)."""
    metrics = Metrics()
    delivered: list[Any] = []

    async def collect(records: Any) -> None:
        delivered.extend(records)

    def lanes() -> tuple[Lane, Lane, Lane]:
        cdrs = Lane(Journal(tmp_path, "cdrs"), collect, metrics)
        events = Lane(Journal(tmp_path, "events"), collect, metrics)
        webhooks = Lane(Journal(tmp_path, "webhooks"), collect, metrics)
        taps = WebhookTaps(webhooks)
        cdrs.tap(taps.on_cdr)
        events.tap(taps.on_event)
        for lane in (cdrs, events, webhooks):
            lane.open()
        return cdrs, events, webhooks

    cdrs, events, _ = lanes()
    real = Journal._write_bytes

    def die_after_own_write(journal: Journal, data: bytes) -> int:
        real(journal, data)
        raise Killed

    monkeypatch.setattr(Journal, "_write_bytes", die_after_own_write)
    with pytest.raises(Killed):
        cdrs.put({"cdr": {"call_id": "call-1", "attempt": 1, "destination": "1001"}})
    with pytest.raises(Killed):
        events.put({"type": "CallDispositioned", "call_id": "call-1", "ts": 120.0})
    monkeypatch.setattr(Journal, "_write_bytes", real)
    assert _on_disk(tmp_path, "webhooks") == []  # the kill came before the taps wrote

    cdrs, events, webhooks = lanes()
    tasks = [asyncio.create_task(lane.run()) for lane in (cdrs, events)]
    try:
        for lane in (cdrs, events):
            assert await lane.wait_drained(10)
    finally:
        for lane in (cdrs, events):
            lane.close()
        await asyncio.gather(*tasks)
    made = [(w.payload["type"], w.payload["event_id"]) for w in webhooks.journal.peek(10)]
    assert sorted(t for t, _ in made) == ["call.disposition", "call.ended"], made
    # Tapped again (the same records, as after a kill that came after the taps wrote): the
    # same ids, so the webhook store keeps one of each.
    cdrs.put({"cdr": {"call_id": "call-1", "attempt": 1, "destination": "1001"}})
    events.put({"type": "CallDispositioned", "call_id": "call-1", "ts": 120.0})
    again = [(w.payload["type"], w.payload["event_id"]) for w in webhooks.journal.peek(10)]
    assert len(again) == 4 and set(again) == set(made)
    for lane in (cdrs, events, webhooks):
        lane.journal.close()
