"""The recording service: control on the switches, encryption when a recording ends, the index.

Life of a recording (docs/recordings.md):

1. ``start`` (API, or policy ``always`` when the ACD connects the caller to an agent): the
   driver records the leg to ``<switch_dir>/<recording id><ext>``; a ``started`` record goes
   into the ``recordings`` lane of the durable outbox.
2. ``pause``/``resume``: ``record_mute`` (silence) or ``record_pause`` (gap), per the rules.
3. ``stop``, the switch's ``RecordingStopped`` or the leg's hangup: the engine reads the file
   through the path mapping (``<engine_dir>/...``), streams it through AES-256-GCM into the
   store directory, fsyncs, writes the wrapped data key beside it (``.key``), appends a
   ``finished`` record to the lane, and only then removes the plaintext.
4. The lane's sink writes the index row (whenever PostgreSQL is there: a recording that ends
   while it is down is indexed later), moves the wrapped key into the row, deletes the
   ``.key`` file, and publishes ``RecordingReady``.

A voicemail message of the IVR ``record`` step (:meth:`RecordingService.voicemail`, fed by the
IVR's event sink) joins at step 3: the switch already closed its file, so a ``voicemail``
record is journalled (row ``finishing``) and the file is sealed at once; recovery seals the
ones an engine stopped before sealing. Its plaintext, though, stays while its call lives (the
flow may play the message back from the ``into`` path) and goes at the call's ``HungUp``, or
when recovery finds the call's channel gone (also after a restart: the row keeps ``source``
until a ``plaintext_removed`` record clears it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from engine.core import clock
from engine.core.errors import (
    ActionFailed,
    EngineError,
    PbxError,
    PbxUnavailable,
    UnsafeValue,
)
from engine.pbx.base import Bridged, HungUp, PbxDriver, PbxEvent, RecordingStopped
from engine.recordings import audio, crypto
from engine.recordings.config import RecordingsSection
from engine.recordings.errors import (
    RecordingConflict,
    RecordingGone,
    RecordingNotAllowed,
    RecordingNotFound,
    RecordingSwitchFailed,
    RecordingTampered,
    RecordingUnavailable,
)
from engine.recordings.model import Action, Recording, RecordingRules
from engine.recordings.store import Filters, RecordingIndex
from engine.store.outbox import Record
from engine.telemetry.logging import get_logger

log = get_logger("engine.recordings")


class CallsPort(Protocol):
    """What the service needs of the calls domain."""

    async def get(self, call_id: str) -> Any: ...  # engine.calls.model.Call
    def driver(self, name: str) -> PbxDriver: ...


class RecordSink(Protocol):
    def put(self, payload: dict[str, Any]) -> None: ...


@dataclass
class Active:
    recording_id: uuid.UUID
    call_id: str
    leg: str  # the channel recorded (the call's current leg when it started)
    switch: str
    switch_path: str  # as the switch writes it
    file: audio.SwitchFile  # as the engine reads it
    rules: RecordingRules
    started_at: float
    agent_id: str | None = None
    queue: str | None = None
    campaign: str | None = None
    state: str = "recording"
    stopping: bool = False
    #: a gap pause sent to the switch and not yet answered (see handle)
    pausing: bool = False
    pauses: list[tuple[float, float | None]] = field(default_factory=list)
    kind: str = "call"  # or "voicemail": a message of the IVR `record` step
    flow: str | None = None
    ended_by: str | None = None
    #: a voicemail whose plaintext stays for its call (the flow may play it back)
    keep_plaintext: bool = False
    #: a voicemail sealed and journalled ready (its plaintext may then go)
    sealed: bool = False

    @property
    def stereo(self) -> bool:
        return self.rules.channels == "dual"


@dataclass(frozen=True, slots=True)
class Audio:
    """One recording's decrypted WAV, already authenticated as a whole: ``size`` bytes;
    :meth:`chunks` streams a byte range of it and closes the file when done (call
    :meth:`close` if it is never streamed)."""

    size: int
    reader: crypto.EncryptedReader

    def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return _aiter_chunks(self.reader, start, self.size if end is None else end)

    def close(self) -> None:
        self.reader.close()


class RecordingService:
    def __init__(
        self,
        section: RecordingsSection,
        *,
        keys: crypto.KeyRing,
        calls: CallsPort,
        records: RecordSink,
        events: RecordSink,
        index: RecordingIndex | None,
        store_dir: Path,
        now: Callable[[], float] = clock.now,
    ) -> None:
        self.section = section
        self.keys = keys
        self._calls = calls
        self._records = records
        self._events = events
        self.index = index
        self.store_dir = store_dir
        self._now = now
        self.active: dict[str, Active] = {}  # by call id
        self._by_leg: dict[str, Active] = {}  # the same, by the recorded leg (switch events)
        self._meta: dict[str, dict[str, str]] = {}  # call id -> queue/agent seen (ACD)
        #: calls the ACD connected whose policy start waits for their Bridged
        self._policy_pending: set[str] = set()
        self._finishing: set[asyncio.Task[None]] = set()
        #: voicemail messages being sealed, by recording id (recovery leaves them alone)
        self._voicemails: dict[str, Active] = {}
        #: voicemail messages whose plaintext is kept while their call lives, by call id
        self._kept: dict[str, list[Active]] = {}
        #: call ids of the latest HungUp events (a message reported after its call's HungUp
        #: keeps no plaintext)
        self._hung_up: OrderedDict[str, None] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        #: ``.key`` files the lane failed to read (an I/O error), with how many times
        self._key_read_failures: dict[Path, int] = {}

    # ------------------------------------------------------------------ control

    def _lock(self, call_id: str) -> asyncio.Lock:
        return self._locks.setdefault(call_id, asyncio.Lock())

    def rules_for(self, call_id: str, variables: Mapping[str, str]) -> RecordingRules:
        meta = self._meta.get(call_id, {})
        return self.section.rules(
            queue=meta.get("queue") or variables.get("ACD_QUEUE"),
            campaign=meta.get("campaign") or variables.get("ENGINE_CAMPAIGN"),
        )

    async def control(self, call_id: str, action: Action, *, by_policy: bool = False) -> Active:
        async with self._lock(call_id):
            return await self._control(call_id, action, by_policy)

    async def _control(self, call_id: str, action: Action, by_policy: bool) -> Active:
        if not self.section.enabled:
            raise RecordingNotAllowed("recording is disabled on this engine ([recordings])")
        call = await self._calls.get(call_id)  # 404 call-not-found
        if call.is_ended:
            raise RecordingConflict(
                f"call {call_id!r} has ended", details={"call_id": call_id, "action": action}
            )
        active = self.active.get(call_id)
        driver = self._calls.driver(call.switch)
        if action == "start":
            if active is not None:
                raise RecordingConflict(
                    f"call {call_id!r} is already being recorded",
                    details={"call_id": call_id, "recording_id": str(active.recording_id)},
                )
            rules = self.rules_for(call_id, call.variables)
            if rules.policy == "never" and not by_policy:
                raise RecordingNotAllowed(
                    f"recording policy of call {call_id!r} is 'never'",
                    details={"call_id": call_id},
                )
            return await self._start(call, driver, rules, consent=not by_policy)
        if active is None:
            raise RecordingConflict(
                f"call {call_id!r} is not being recorded",
                details={"call_id": call_id, "action": action},
            )
        want = {"pause": "recording", "resume": "paused"}.get(action)
        if want is not None and active.state != want:
            raise RecordingConflict(
                f"cannot {action} a recording that is {active.state}",
                details={"call_id": call_id, "state": active.state},
            )
        path, now, leg = active.switch_path, self._now(), active.leg
        if action == "stop":
            try:
                await self._switch(active, driver.record_stop(leg, path))
            except RecordingSwitchFailed:
                if not (active.state == "paused" and active.rules.pause == "gap"):
                    raise
                # Asterisk's gap pause already stopped the MixMonitor: nothing runs to stop
                # (StopMixMonitor answers an error); the file is closed and complete.
            self._finish_soon(active)
            return active
        paused = action == "pause"
        if active.rules.pause == "silence":
            await self._switch(active, driver.record_mute(leg, path, paused))
        else:
            # Asterisk's gap pause stops the MixMonitor: its MixMonitorStop can be handled
            # before this await resumes (the event and the action's reply come in one read,
            # and the event consumer may run first), so handle() must know a pause is on
            # its way, not only one that is done.
            active.pausing = paused
            try:
                await self._switch(
                    active, driver.record_pause(leg, path, paused, stereo=active.stereo)
                )
            finally:
                active.pausing = False
        if paused:
            active.pauses.append((now, None))
        elif active.pauses:
            active.pauses[-1] = (active.pauses[-1][0], now)
        active.state = "paused" if paused else "recording"
        self._records.put(
            {"kind": "state", "recording_id": str(active.recording_id), "state": active.state}
        )
        return active

    async def _start(
        self, call: Any, driver: PbxDriver, rules: RecordingRules, *, consent: bool
    ) -> Active:
        paths = self.section.switches.get(call.switch)
        if paths is None:
            raise RecordingNotAllowed(
                f"no recording path mapping for switch {call.switch!r} "
                f"([recordings.switches.{call.switch}])",
                details={"switch": call.switch},
            )
        rid = uuid.uuid4()
        fmt = driver.record_format(rules.channels == "dual")
        name = f"{rid}{fmt.extension}"
        switch_path = f"{paths.switch_dir.rstrip('/')}/{name}"
        file = audio.SwitchFile(
            Path(paths.engine_dir) / name, fmt.container, fmt.rate or 8000, fmt.channels
        )
        meta = self._meta.get(call.call_id, {})
        active = Active(
            recording_id=rid,
            call_id=call.call_id,
            leg=call.current_leg,
            switch=call.switch,
            switch_path=switch_path,
            file=file,
            rules=rules,
            started_at=self._now(),
            agent_id=meta.get("agent_id"),
            queue=meta.get("queue") or call.variables.get("ACD_QUEUE"),
            campaign=meta.get("campaign") or call.variables.get("ENGINE_CAMPAIGN"),
        )
        if rules.consent_prompt and consent and call.bridged_at is None:
            # The consent notice is played before the first recorded frame. Not on a bridged
            # leg, nor on a policy start (at the ACD's bridge): Asterisk plays by redirecting
            # the channel, which would take it out of its bridge (docs/recordings.md).
            await self._switch(active, driver.play(active.leg, rules.consent_prompt))
        await self._switch(
            active,
            driver.record_start(call.current_leg, switch_path, stereo=active.stereo),
        )
        self._track(active)
        self._records.put(
            {
                "kind": "started",
                "recording_id": str(rid),
                "call_id": call.call_id,
                "switch": call.switch,
                "agent_id": active.agent_id,
                "queue": active.queue,
                "campaign": active.campaign,
                "started_at": active.started_at,
                "channels": rules.channels,
                "pause_mode": rules.pause,
                "retention_days": rules.retention_days,
            }
        )
        log.info("recording started", call_id=call.call_id, recording_id=str(rid))
        return active

    def _track(self, active: Active) -> None:
        self.active[active.call_id] = active
        self._by_leg[active.leg] = active

    def _untrack(self, active: Active) -> None:
        if self.active.get(active.call_id) is active:
            del self.active[active.call_id]
        if self._by_leg.get(active.leg) is active:
            del self._by_leg[active.leg]

    async def _switch(self, active: Active, action: Any) -> None:
        try:
            await action
        except PbxUnavailable as err:
            raise RecordingUnavailable(
                f"switch {active.switch!r} is not available: {err}",
                details={"switch": active.switch, "call_id": active.call_id},
            ) from err
        except UnsafeValue as err:
            raise RecordingSwitchFailed(
                f"not sent: {err}", details={"switch": active.switch, "call_id": active.call_id}
            ) from err
        except ActionFailed as err:
            raise RecordingSwitchFailed(
                f"switch {active.switch!r} refused the recording action: {err}",
                details={"switch": active.switch, "call_id": active.call_id},
            ) from err

    # ------------------------------------------------------------------ voicemail

    def voicemail(self, event: Mapping[str, Any]) -> str | None:
        """A message the IVR ``record`` step reported (its ``IvrRecorded`` event, on its way to
        the event lane): journal it in the recordings lane at once (a crash from here on
        cannot lose it: recovery seals it from the switch's file), then seal it like a call
        recording. Returns its recording id, or None when this engine cannot read the file
        (recording disabled, or no ``[recordings.switches]`` mapping holds its directory)."""
        if not self.section.enabled:
            return None
        path = str(event.get("path") or "")
        found = self._voicemail_source(path)
        if found is None:
            return None
        switch, source = found
        duration_ms = event.get("duration_ms")
        if duration_ms == 0:
            # The switch said the take holds nothing (FreeSWITCH's record_ms 0): no message.
            # Where it does not say (Asterisk), a header-only file is dropped when sealing.
            log.info("voicemail take had no audio; not kept", path=path)
            return None
        ended_at = float(event.get("ts") or self._now())
        started_at = ended_at - (duration_ms / 1000 if isinstance(duration_ms, int) else 0.0)
        rules = self.section.defaults()
        active = Active(
            recording_id=uuid.uuid4(),
            call_id=str(event.get("call_id") or ""),
            leg=str(event.get("call_id") or ""),
            switch=switch,
            switch_path=path,
            file=audio.SwitchFile(source, "wav"),
            rules=replace(rules, policy="on_demand", channels="mono", consent_prompt=""),
            started_at=started_at,
            state="finishing",
            stopping=True,
            kind="voicemail",
            flow=str(event.get("flow") or "") or None,
            ended_by=str(event["ended_by"]) if event.get("ended_by") else None,
        )
        rid = str(active.recording_id)
        if active.call_id and active.ended_by != "hangup" and active.call_id not in self._hung_up:
            # The call goes on: the flow may play the message back from its `into` path, so
            # the plaintext stays until the call ends (docs/recordings.md "Voicemail").
            active.keep_plaintext = True
            self._kept.setdefault(active.call_id, []).append(active)
        self._records.put(
            {
                "kind": "voicemail",
                "recording_id": rid,
                "call_id": active.call_id,
                "switch": switch,
                "started_at": started_at,
                "ended_at": ended_at,
                "pause_mode": rules.pause,
                "retention_days": rules.retention_days,
                "flow": active.flow,
                "ended_by": active.ended_by,
                "source": str(source),
            }
        )
        self._voicemails[rid] = active
        self._spawn(self.finish(active, ended_at))
        log.info("voicemail message taken", call_id=active.call_id, recording_id=rid)
        return rid

    def _voicemail_source(self, path: str) -> tuple[str, Path] | None:
        """The switch whose ``switch_dir`` holds ``path`` and the file as the engine reads it.
        None (logged) when no mapping holds it, or several switches share that directory
        (the file cannot be told apart: give each switch its own ``switch_dir``)."""
        where = PurePosixPath(path)
        if not where.is_absolute() or ".." in where.parts:
            log.warning("voicemail message not indexed: not a plain absolute path", path=path)
            return None
        found: list[tuple[str, Path]] = []
        for name, paths in sorted(self.section.switches.items()):
            try:
                rel = where.relative_to(PurePosixPath(paths.switch_dir))
            except ValueError:
                continue
            found.append((name, Path(paths.engine_dir) / rel))
        if len(found) != 1:
            log.warning(
                "voicemail message not indexed: "
                + ("no [recordings.switches] switch_dir holds it" if not found else "")
                + ("several switches share its switch_dir" if found else ""),
                path=path,
                switches=[name for name, _ in found],
            )
            return None
        return found[0]

    # ------------------------------------------------------------------ policy and events

    def observe(self, payload: Mapping[str, Any]) -> None:
        """An engine event on its way to the stream (synchronous tap): the ACD's
        ``QueueCallConnected`` tells the queue and agent of a call and starts policy
        ``always``."""
        if payload.get("type") != "QueueCallConnected":
            return
        call_id = str(payload.get("call_id", ""))
        meta = self._meta.setdefault(call_id, {})
        meta["queue"] = str(payload.get("queue") or "")
        meta["agent_id"] = str(payload.get("agent_id") or "")
        active = self.active.get(call_id)
        if active is not None:
            active.queue = active.queue or meta["queue"]
            active.agent_id = active.agent_id or meta["agent_id"]
        elif self.section.enabled:
            # Started at the caller's Bridged, not now: the ACD bridges right after this
            # event, and the recorder goes on the channel as it is once bridged.
            self._policy_pending.add(call_id)

    async def _policy_start(self, call_id: str) -> None:
        try:
            call = await self._calls.get(call_id)
            if self.rules_for(call_id, call.variables).policy == "always":
                await self.control(call_id, "start", by_policy=True)
        except Exception as err:
            log.warning("policy recording not started", call_id=call_id, error=str(err))

    async def consume(self, driver: PbxDriver) -> None:
        async for event in driver.events():
            try:
                self.handle(event)
            except Exception as err:  # one bad event never ends the loop
                log.error("recording event failed", error=repr(err))

    def handle(self, event: PbxEvent) -> None:
        if isinstance(event, Bridged) and event.call_id in self._policy_pending:
            self._policy_pending.discard(event.call_id)
            self._spawn(self._policy_start(event.call_id))
        active = self._by_leg.get(event.call_id)
        if isinstance(event, HungUp):
            self._policy_pending.discard(event.call_id)
            self._call_gone(event.call_id)
            if active is None:
                self._meta.pop(event.call_id, None)
                lock = self._locks.get(event.call_id)
                if lock is not None and not lock.locked():
                    del self._locks[event.call_id]
        if active is None:
            return
        if isinstance(event, RecordingStopped):
            if event.path and Path(event.path).stem != Path(active.switch_path).stem:
                # Another recorder on the same leg: an IVR voicemail `record` fires its own
                # RECORD_STOP (with its own Record-File-Path) to every inbound connection
                # (outbound-socket-record-silence*.esl); the call's recording goes on.
                return
            if active.rules.pause == "gap" and (active.state == "paused" or active.pausing):
                return  # the stop of a gap pause on Asterisk (resumed by appending)
            self._finish_soon(active)
        elif isinstance(event, HungUp):
            self._finish_soon(active)

    # ------------------------------------------------------------------ finishing

    def _finish_soon(self, active: Active) -> None:
        if active.stopping:
            return
        active.stopping = True
        if active.pauses and active.pauses[-1][1] is None:
            active.pauses[-1] = (active.pauses[-1][0], self._now())
        self._spawn(self.finish(active, self._now()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once no recording is being finished (tests, shutdown)."""
        if not self._finishing:
            return True
        _done, pending = await asyncio.wait(set(self._finishing), timeout=timeout_s)
        return not pending

    async def finish(self, active: Active, ended_at: float) -> None:
        """Encrypt what the switch wrote and hand the result to the index lane."""
        payload: dict[str, Any] = {
            "kind": "finished",
            "recording_id": str(active.recording_id),
            "call_id": active.call_id,
            "switch": active.switch,
            "agent_id": active.agent_id,
            "queue": active.queue,
            "campaign": active.campaign,
            "started_at": active.started_at,
            "ended_at": ended_at,
            "channels": active.rules.channels,
            "pause_mode": active.rules.pause,
            "retention_days": active.rules.retention_days,
            "recording_kind": active.kind,
            "flow": active.flow,
            "ended_by": active.ended_by,
        }
        try:
            await _settled(active.file.path)
            if active.kind == "voicemail" and await asyncio.to_thread(_no_audio, active.file):
                self._discard(active)
                return
            sealed = await asyncio.to_thread(self._seal, active)
            payload.update(sealed)
            payload["state"] = "ready"
        except (OSError, audio.AudioFileError, crypto.RecordingCryptoError) as err:
            log.error(
                "recording could not be stored",
                recording_id=str(active.recording_id),
                error=str(err),
            )
            payload.update(state="failed", error=str(err)[:500])
        # A voicemail's plaintext stays while its call lives (the row keeps `source`, so a
        # restarted engine's recovery still removes it); else it goes now.
        keep = active.keep_plaintext and payload["state"] == "ready"
        if active.kind == "voicemail":
            payload["plaintext_kept"] = keep
        self._records.put(payload)
        if payload["state"] == "ready" and not keep:
            # The journal has the record (a crash cannot lose it): the plaintext may go.
            with contextlib.suppress(FileNotFoundError):
                active.file.path.unlink()
        if active.kind == "voicemail":
            # A call recording of the same call (if any) is tracked on its own.
            self._voicemails.pop(str(active.recording_id), None)
            active.sealed = keep
            if not keep:
                self._unkeep(active)  # failed: the plaintext stays, as the only copy
            return
        self._untrack(active)
        self._locks.pop(active.call_id, None)
        self._meta.pop(active.call_id, None)

    def _discard(self, active: Active) -> None:
        """A voicemail take with no audio (only a WAV header): no message, no row."""
        log.info(
            "voicemail take had no audio; not kept",
            call_id=active.call_id,
            recording_id=str(active.recording_id),
        )
        self._records.put({"kind": "discard", "recording_id": str(active.recording_id)})
        with contextlib.suppress(FileNotFoundError):
            active.file.path.unlink()
        self._voicemails.pop(str(active.recording_id), None)
        self._unkeep(active)

    # ------------------------------------------------------------------ kept voicemail plaintext

    def _call_gone(self, call_id: str) -> None:
        """The call ended: its voicemail messages' plaintext goes (at once when sealed, else
        when sealing is done)."""
        self._hung_up[call_id] = None
        while len(self._hung_up) > HUNG_UP_MEMORY:
            self._hung_up.popitem(last=False)
        for active in self._kept.pop(call_id, []):
            active.keep_plaintext = False
            if active.sealed:
                self._remove_plaintext(active)

    def _unkeep(self, active: Active) -> None:
        kept = self._kept.get(active.call_id)
        if kept is not None and active in kept:
            kept.remove(active)
            if not kept:
                del self._kept[active.call_id]

    def _remove_plaintext(self, active: Active) -> None:
        """A sealed message's plaintext, kept for its call, goes; the row's ``source`` is
        cleared through the lane (so recovery stops looking for it)."""
        with contextlib.suppress(FileNotFoundError):
            active.file.path.unlink()
        self._records.put({"kind": "plaintext_removed", "recording_id": str(active.recording_id)})
        log.info(
            "voicemail plaintext removed at the call's end",
            call_id=active.call_id,
            recording_id=str(active.recording_id),
        )

    @property
    def kept_plaintext(self) -> dict[str, list[str]]:
        """Call id -> the engine-side paths of its voicemail messages kept in plaintext."""
        return {c: [str(a.file.path) for a in kept] for c, kept in self._kept.items()}

    def _seal(self, active: Active) -> dict[str, Any]:
        rate, channels, data = audio.layouts([active.file])
        rid = active.recording_id
        day = self.store_dir / clock_day(active.started_at)
        day.mkdir(parents=True, exist_ok=True)
        final = day / f"{rid}.enc"
        part = final.with_suffix(".part")
        out: dict[str, Any] = {
            "sample_rate": rate,
            "duration_s": round(data / (rate * channels * 2), 3),
            "file": str(final.relative_to(self.store_dir)),
        }
        data_key = crypto.new_data_key()
        with part.open("wb") as fh:
            result = crypto.encrypt_stream(
                audio.wav_stream([active.file]), fh, data_key, rid, self.section.frame_size
            )
            fh.flush()
            os.fsync(fh.fileno())
        kid, wrapped = self.keys.wrap(data_key, rid)
        out.update(key_id=kid, encrypted_size=result.encrypted_size)
        os.replace(part, final)
        # The wrapped key waits beside the file until the index row holds it (the sink then
        # deletes this file): nothing that stays around holds key material.
        _write_synced(final.with_suffix(".key"), f"{kid}:{base64.b64encode(wrapped).decode()}")
        _fsync_dir(day)
        out.update(size=result.size, sha256=result.sha256)
        return out

    # ------------------------------------------------------------------ the lane's sink

    async def sink(self, records: Sequence[Record]) -> None:
        if self.index is None:
            raise RecordingUnavailable("no recordings index (PostgreSQL) configured")
        batch = [self._with_key(r) for r in records]
        await self.index.write(batch, self._ready)
        for r in records:
            if r.payload.get("kind") == "finished" and r.payload.get("file"):
                with contextlib.suppress(FileNotFoundError):
                    (self.store_dir / r.payload["file"]).with_suffix(".key").unlink()

    def _with_key(self, record: Record) -> Record:
        """A ``finished`` record with the wrapped key of its ``.key`` file, for the row.

        A key file that is corrupt raises ``RecordingKeyFileError`` at once; one that cannot
        be read (an I/O error) raises that error to the lane (retried with backoff) until it
        failed ``KEY_READ_ATTEMPTS`` times, then ``RecordingKeyFileError``. That is a data
        error to the lane: the record is set aside in ``recordings.dead.jsonl`` (logged,
        counted, shown by ``engine doctor``) and the lane goes on. Nothing is deleted: the
        sealed file and its ``.key`` stay for an operator."""
        p = record.payload
        if p.get("kind") != "finished" or not p.get("file") or p.get("state") != "ready":
            return record
        path = (self.store_dir / p["file"]).with_suffix(".key")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self._key_read_failures.pop(path, None)
            return record  # already moved into the row by an earlier delivery (or unencrypted)
        except OSError as err:
            tries = self._key_read_failures.get(path, 0) + 1
            self._key_read_failures[path] = tries
            if tries < KEY_READ_ATTEMPTS:
                raise  # may pass (a disk or mount hiccup): the lane retries
            raise RecordingKeyFileError(
                f"recording {p.get('recording_id')}: key file {path} unreadable after "
                f"{tries} attempts ({type(err).__name__}: {err})"
            ) from None  # not chained: an OSError in the chain reads as "storage away"
        self._key_read_failures.pop(path, None)
        kid, wrapped = _parse_key_file(path, raw, p)
        return replace(record, payload={**p, "key_id": kid, "wrapped_key": wrapped})

    def _ready(self, p: Mapping[str, Any]) -> None:
        self._events.put(
            {
                "type": "RecordingReady",
                "ts": self._now(),
                "recording_id": p["recording_id"],
                "kind": p.get("recording_kind", "call"),
                "call_id": p["call_id"],
                "switch": p["switch"],
                "agent_id": p.get("agent_id"),
                "queue": p.get("queue"),
                "campaign": p.get("campaign"),
                "duration_s": p.get("duration_s"),
                "size": p.get("size"),
                "sha256": p.get("sha256"),
                "ended_at": p.get("ended_at"),
                "flow": p.get("flow"),
            }
        )

    # ------------------------------------------------------------------ reading and deleting

    def _index(self) -> RecordingIndex:
        if self.index is None:
            raise RecordingUnavailable("no recordings index (PostgreSQL) configured")
        return self.index

    async def get(self, recording_id: uuid.UUID) -> Any:
        rec = await self._index().get(recording_id)
        if rec is None:
            raise RecordingNotFound(
                f"no recording {recording_id}", details={"recording_id": str(recording_id)}
            )
        return rec

    async def search(self, filters: Filters, *, limit: int, after: Any) -> list[Any]:
        return await self._index().search(filters, limit=limit, after=after)

    async def audio(self, recording_id: uuid.UUID) -> Audio:
        """The decrypted WAV, or a byte range of it. The whole file is authenticated (and its
        hash compared with the index) before the first byte is returned, so a tampered file
        is a clear error, never audio that stops half way."""
        rec = await self.get(recording_id)
        if rec.state == "deleted":
            raise RecordingGone(
                f"recording {recording_id} was deleted", details={"recording_id": str(recording_id)}
            )
        if rec.state != "ready":
            raise RecordingConflict(
                f"recording {recording_id} is {rec.state}, not ready",
                details={"recording_id": str(recording_id), "state": rec.state},
            )
        material = await self._index().key_material(recording_id)
        if material is None:
            raise RecordingGone(
                f"recording {recording_id} has no data key",
                details={"recording_id": str(recording_id)},
            )
        path = self.store_dir / material.file
        reader = await asyncio.to_thread(self._open_verified, path, material, recording_id)
        return Audio(reader.size, reader)

    def _open_verified(
        self, path: Path, material: Any, recording_id: uuid.UUID
    ) -> crypto.EncryptedReader:
        try:
            data_key = self.keys.unwrap(material.key_id, material.wrapped_key, recording_id)
            reader = crypto.open_encrypted(path, data_key, recording_id)
        except FileNotFoundError as err:
            raise RecordingTampered(
                f"recording {recording_id}: its encrypted file is missing",
                details={"recording_id": str(recording_id)},
            ) from err
        except crypto.RecordingCryptoError as err:
            raise RecordingTampered(
                f"recording {recording_id} cannot be read: {err}",
                details={"recording_id": str(recording_id)},
            ) from err
        try:
            reader.verify(material.sha256)
        except crypto.IntegrityError as err:
            reader.close()
            raise RecordingTampered(
                f"recording {recording_id} cannot be read: {err}",
                details={"recording_id": str(recording_id), "frame": err.frame},
            ) from err
        return reader

    async def delete(self, recording_id: uuid.UUID) -> None:
        rec = await self.get(recording_id)
        if rec.legal_hold:
            raise RecordingConflict(
                f"recording {recording_id} is under legal hold",
                details={"recording_id": str(recording_id)},
                error_id="legal-hold",
            )
        shredded, file = await self._index().shred(recording_id)
        if shredded and file:
            with contextlib.suppress(FileNotFoundError):
                (self.store_dir / file).unlink()
            with contextlib.suppress(FileNotFoundError):
                (self.store_dir / file).with_suffix(".key").unlink()

    async def set_legal_hold(self, recording_id: uuid.UUID, hold: bool) -> Any:
        await self.get(recording_id)
        await self._index().set_legal_hold(recording_id, hold)
        return await self.get(recording_id)

    async def sweep_once(self, limit: int = 500) -> int:
        """Delete (crypto-shred) every recording past its retention; legal holds skipped."""
        count = 0
        for rid in await self._index().expired(self._now(), limit):
            shredded, file = await self._index().shred(rid)
            if shredded:
                count += 1
                if file:
                    with contextlib.suppress(FileNotFoundError):
                        (self.store_dir / file).unlink()
        if count:
            log.info("retention sweep deleted recordings", count=count)
        return count

    async def sweep(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                await self.sweep_once()
            except Exception as err:
                log.warning("retention sweep failed", error=str(err))
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(self.section.sweep_interval_s)

    # ------------------------------------------------------------------ recovery

    async def recover_once(self, min_age_s: float = 2.0) -> int:
        """Take back recordings this engine no longer tracks (it restarted) and finish those
        whose call ended meanwhile; finish tracked ones whose call ended without a HungUp
        (a call the post-restart resync found gone). Returns how many it acted on."""
        acted = 0
        for active in list(self.active.values()):
            if not active.stopping and await self._call_ended(active.call_id):
                self._finish_soon(active)
                acted += 1
        if not self.section.switches:
            return acted  # no switch records for this engine: nothing to take back
        acted += await self._recover_voicemail(min_age_s)
        acted += await self._recover_kept_plaintext()
        rows = await self._index().unfinished(
            sorted(self.section.switches), self._now() - min_age_s
        )
        for rec in rows:
            if rec.call_id in self.active:
                continue
            sealed = self.store_dir / clock_day(rec.started_at) / f"{rec.recording_id}.enc"
            if await asyncio.to_thread(sealed.exists):
                continue  # finished here already; its index record is still in the outbox
            try:
                call = await self._calls.get(rec.call_id)
            except EngineError:
                call = None
            try:
                driver = self._calls.driver(rec.switch)
            except EngineError:
                continue  # a switch this engine does not control
            paths = self.section.switches[rec.switch]
            fmt = driver.record_format(rec.channels == "dual")
            name = f"{rec.recording_id}{fmt.extension}"
            active = Active(
                recording_id=uuid.UUID(rec.recording_id),
                call_id=rec.call_id,
                leg=call.current_leg if call is not None else rec.call_id,
                switch=rec.switch,
                switch_path=f"{paths.switch_dir.rstrip('/')}/{name}",
                file=audio.SwitchFile(
                    Path(paths.engine_dir) / name, fmt.container, fmt.rate or 8000, fmt.channels
                ),
                rules=RecordingRules(
                    policy="on_demand",
                    pause=rec.pause_mode,
                    channels=rec.channels,
                    consent_prompt="",
                    retention_days=rec.retention_days,
                ),
                started_at=rec.started_at,
                agent_id=rec.agent_id,
                queue=rec.queue,
                campaign=rec.campaign,
                state=rec.state,
            )
            self._track(active)
            if call is None or call.is_ended:
                self._finish_soon(active)
            log.info("recording recovered", recording_id=rec.recording_id, call_id=rec.call_id)
            acted += 1
        return acted

    async def _recover_voicemail(self, min_age_s: float) -> int:
        """Seal voicemail messages journalled before a restart and never sealed: the switch's
        file is still where the row says (the plaintext goes only once the sealed message
        is journalled)."""
        acted = 0
        pending = await self._index().pending_voicemail(
            sorted(self.section.switches), self._now() - min_age_s
        )
        for rec, source in pending:
            if rec.recording_id in self._voicemails:
                continue
            sealed = self.store_dir / clock_day(rec.started_at) / f"{rec.recording_id}.enc"
            if await asyncio.to_thread(sealed.exists):
                continue  # sealed here already; its index record is still in the outbox
            active = _voicemail_active(rec, source)
            self._voicemails[rec.recording_id] = active
            self._spawn(self.finish(active, rec.ended_at or rec.started_at))
            log.info("voicemail message recovered", recording_id=rec.recording_id)
            acted += 1
        return acted

    async def _recover_kept_plaintext(self) -> int:
        """Voicemail plaintext kept for a call that is gone: this engine's, whose HungUp it
        missed (a switch link down at the time), and those an engine that stopped left behind
        (rows that still name their ``source``). Whether a call lives is the switch's answer
        (its channel list): an IVR call the engine did not place is not a tracked call."""
        rows = await self._index().kept_voicemail(sorted(self.section.switches))
        by_switch: dict[str, set[str]] = {}
        for call_id, kept in self._kept.items():
            for active in kept:
                by_switch.setdefault(active.switch, set()).add(call_id)
        orphans: list[Active] = []
        for rec, source in rows:
            if self._holds(rec.call_id, rec.recording_id) or rec.recording_id in self._voicemails:
                continue
            orphan = _voicemail_active(rec, source)
            orphan.keep_plaintext = orphan.sealed = True
            orphans.append(orphan)
            by_switch.setdefault(rec.switch, set())
        acted = 0
        for switch, call_ids in sorted(by_switch.items()):
            live = await self._live_channels(switch)
            if live is None:
                continue  # the switch cannot say now: next round
            for call_id in sorted(call_ids - live):
                if call_id in self._kept:
                    self._call_gone(call_id)
                    acted += 1
            for orphan in orphans:
                if orphan.switch != switch or self._holds(orphan.call_id, str(orphan.recording_id)):
                    continue
                acted += 1
                if orphan.call_id in live:
                    self._kept.setdefault(orphan.call_id, []).append(orphan)  # its HungUp
                else:
                    self._remove_plaintext(orphan)
        return acted

    def _holds(self, call_id: str, recording_id: str) -> bool:
        """Whether this engine keeps that message's plaintext for its call already."""
        return any(str(a.recording_id) == recording_id for a in self._kept.get(call_id, []))

    async def _live_channels(self, switch: str) -> set[str] | None:
        try:
            driver = self._calls.driver(switch)
            return {c.call_id for c in await driver.live_calls()}
        except (EngineError, PbxError, OSError, TimeoutError) as err:
            log.warning("live channels not read", switch=switch, error=str(err))
            return None

    async def _call_ended(self, call_id: str) -> bool:
        try:
            return bool((await self._calls.get(call_id)).is_ended)
        except EngineError as err:
            return err.status == 404

    async def recover(self, stopping: Callable[[], bool], interval_s: float = 30.0) -> None:
        while not stopping():
            try:
                await self.recover_once()
            except Exception as err:
                log.warning("recording recovery failed", error=str(err))
            await asyncio.sleep(interval_s)

    async def rewrap(self, batch: int = 500) -> tuple[int, int]:
        """Re-wrap every data key not under the current KEK (rotation); the audio files are not
        touched. Returns (re-wrapped, skipped): a key that no configured KEK opens is skipped
        and logged (another engine's, or a KEK already removed), never fatal."""
        done = 0
        skipped: set[uuid.UUID] = set()
        while True:
            rows = await self._index().wrapped_keys(self.keys.current_id, batch + len(skipped))
            rows = [r for r in rows if r[0] not in skipped]
            if not rows:
                return done, len(skipped)
            for rid, kid, wrapped in rows:
                try:
                    new_kid, new_wrapped = self.keys.rewrap(kid, wrapped, rid)
                except crypto.KekError as err:
                    log.warning("data key not re-wrapped", recording_id=str(rid), error=str(err))
                    skipped.add(rid)
                    continue
                if await self._index().replace_key(rid, kid, new_kid, new_wrapped):
                    done += 1


# ----------------------------------------------------------------------------- helpers

#: How many ended calls' ids the service remembers (a voicemail reported after its call's
#: HungUp keeps no plaintext).
HUNG_UP_MEMORY = 4096


def _voicemail_active(rec: Recording, source: str) -> Active:
    """A voicemail message as its index row tells it (recovery): ``source`` is the switch's
    file as the engine reads it."""
    return Active(
        recording_id=uuid.UUID(rec.recording_id),
        call_id=rec.call_id,
        leg=rec.call_id,
        switch=rec.switch,
        switch_path=source,
        file=audio.SwitchFile(Path(source), "wav"),
        rules=RecordingRules(
            policy="on_demand",
            pause=rec.pause_mode,
            channels="mono",
            consent_prompt="",
            retention_days=rec.retention_days,
        ),
        started_at=rec.started_at,
        state="finishing",
        stopping=True,
        kind="voicemail",
        flow=rec.flow,
        ended_by=rec.ended_by,
    )


def clock_day(ts: float) -> str:
    d = clock.to_datetime(ts)
    return f"{d.year:04d}/{d.month:02d}/{d.day:02d}"


async def _settled(path: Path, timeout_s: float = 10.0) -> None:
    """Wait until the switch has finished writing ``path``: it exists and its size stopped
    changing (MixMonitor closes its file on its own thread after MixMonitorStop/Hangup)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = -1
    while True:
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            size = -1
        if size >= 0 and size == last:
            return
        if loop.time() > deadline:
            if size < 0:
                raise audio.AudioFileError(f"{path}: the switch's recording never appeared")
            return
        last = size
        await asyncio.sleep(0.1)  # polling a file: there is no event to wait on


def _no_audio(file: audio.SwitchFile) -> bool:
    """True for a WAV with no sample in it (a voicemail take the caller left silent)."""
    return audio.read_layout(file).data_size == 0


def _write_synced(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: How many times the recordings lane tries to read a ``.key`` file that gives an I/O error
#: before its record is set aside (a corrupt one is set aside at the first try).
KEY_READ_ATTEMPTS = 5


class RecordingKeyFileError(ValueError):
    """A recording's ``.key`` file is corrupt or stays unreadable. A ``ValueError``: a data
    error to the outbox lane (engine/store/outbox/dead.py), which sets the record aside."""


def recording_key(record: Record) -> str:
    """A ``recordings`` lane record's name in a log line: ``<kind> <recording id>``."""
    p = record.payload
    return (
        f"{p.get('kind')} {p.get('recording_id')}" if p.get("recording_id") else f"seq={record.seq}"
    )


def _parse_key_file(path: Path, raw: bytes, p: Mapping[str, Any]) -> tuple[str, str]:
    """``<key id>:<base64 wrapped key>`` as ``_seal`` writes it; RecordingKeyFileError naming
    the file and what is wrong otherwise (never the key material)."""

    def corrupt(what: str) -> RecordingKeyFileError:
        return RecordingKeyFileError(
            f"recording {p.get('recording_id')}: key file {path} is corrupt: {what}"
        )

    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise corrupt("not ASCII text") from None
    kid, colon, wrapped = text.partition(":")
    if not colon or not kid or not wrapped:
        raise corrupt(f"not '<key id>:<base64>' ({len(raw)} bytes)")
    try:
        base64.b64decode(wrapped, validate=True)
    except ValueError:
        raise corrupt("the wrapped key is not base64") from None
    expected = p.get("key_id")
    if expected is not None and kid != expected:
        raise corrupt(f"key id {kid!r}, the sealed recording says {expected!r}")
    return kid, wrapped


async def _aiter_chunks(
    reader: crypto.EncryptedReader, start: int, stop: int
) -> AsyncIterator[bytes]:
    try:
        it = reader.read_range(start, stop)
        while True:
            piece = await asyncio.to_thread(next, it, None)
            if piece is None:
                return
            yield piece
    finally:
        reader.close()
