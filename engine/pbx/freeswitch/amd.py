"""Answering-machine detection on FreeSWITCH, which ships no AMD module.

A leg originated with :class:`engine.pbx.base.Amd` is parked (``&park()``). On its
CHANNEL_ANSWER the driver asks FreeSWITCH to stream the leg's incoming audio to the engine
(ESL ``sendmsg`` ``call-command: unicast``, see :mod:`.media_tap`), and
:class:`engine.speech.amd.AmdDetector` (app_amd's rules and amd.conf's parameters) decides.
The result is one :class:`engine.pbx.base.AmdResult` with Asterisk's status and cause strings;
the leg stays parked and silent until the engine acts, as after ``[engine-amd]`` on Asterisk.

Every wait is bounded: the analysis ends at ``total_analysis_time`` of wall time whatever the
stream does (NOTSURE ``NOAUDIODATA-0`` when no datagram ever came, ``TOOLONG-<ms>`` when it
stalled), and a hangup during it gives HANGUP before the leg's HungUp, like app_amd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from engine.core.errors import ActionFailed, PbxUnavailable
from engine.pbx import base
from engine.pbx.freeswitch.media_tap import MediaTap, decode_l16
from engine.speech.amd import AmdDetector, AmdOverrides, AmdParams, AmdVerdict

log = logging.getLogger(__name__)

#: How long to wait for a tap's first frame before trying another local-port (FreeSWITCH
#: sends one every 20 ms from the unicast command on; a failed bind sends none).
FIRST_FRAME_S = 0.4
#: Other local-ports tried (bounded: a far end that sends no audio at all ends NOTSURE
#: NOAUDIODATA at the analysis time, as before).
PORT_RETRIES = 2

#: Sends ``sendmsg <uuid>`` with these headers; raises ActionFailed on a refusal.
SendUnicast = Callable[[str, list[tuple[str, str]]], Awaitable[None]]
#: Publishes a normalized event (the driver's fan-out).
Publish = Callable[[base.PbxEvent], None]


class AmdSessions:
    """The AMD state of one driver: legs waiting for their answer, analyses running."""

    def __init__(
        self,
        switch: str,
        tap: MediaTap,
        params: AmdParams,
        send_unicast: SendUnicast,
        publish: Publish,
        clock: Callable[[], float],
    ) -> None:
        self.switch = switch
        self.tap = tap
        self.params = params
        self._send_unicast = send_unicast
        self._publish = publish
        self._clock = clock
        #: Legs originated with Amd() that have not answered yet, with their own parameters
        #: (a campaign's profile) when they have any.
        self._wanted: dict[str, AmdOverrides | None] = {}
        self._detectors: dict[str, AmdDetector] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Legs whose AmdResult is out (until their hangup).
        self._done: set[str] = set()

    def want(self, call_id: str, params: AmdOverrides | None = None) -> None:
        self._wanted[call_id] = params

    def forget(self, call_id: str) -> None:
        self._wanted.pop(call_id, None)

    def params_for(self, overrides: AmdOverrides | None) -> AmdParams:
        """The detector's parameters for one leg: the driver's (amd.conf's), with the leg's
        own overrides on top (what AMD()'s arguments do on Asterisk)."""
        return overrides.apply(self.params) if overrides is not None else self.params

    def knows(self, call_id: str) -> bool:
        """This process is waiting for the leg's answer, analysing it, or reported it."""
        return call_id in self._wanted or call_id in self._detectors or call_id in self._done

    def on_answer(self, call_id: str, rate: int) -> None:
        """CHANNEL_ANSWER of a leg: start its analysis if it was originated with Amd()."""
        if call_id not in self._wanted:
            return
        overrides = self._wanted.pop(call_id)
        self._start(call_id, rate, AmdDetector(self.params_for(overrides)))

    def resume(self, call_id: str, rate: int, overrides: AmdOverrides | None = None) -> None:
        """An answered Amd() leg whose analysis died with the previous engine process:
        analyse it again from now, as a resumed analysis (its greeting may be over)."""
        if self.knows(call_id):
            return
        self._start(call_id, rate, AmdDetector(self.params_for(overrides), resumed=True))

    def _start(self, call_id: str, rate: int, detector: AmdDetector) -> None:
        self._detectors[call_id] = detector
        task = asyncio.ensure_future(self._analyse(call_id, rate, detector))
        self._tasks[call_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(call_id, None))

    def on_hangup(self, call_id: str) -> None:
        """The leg hung up: an analysis still running ends with HANGUP (published now, so it
        precedes the leg's HungUp), and its port is freed."""
        self._wanted.pop(call_id, None)
        detector = self._detectors.get(call_id)
        if detector is not None:
            self._finish(call_id, detector.hangup())
        self._end(call_id)
        self._done.discard(call_id)

    def on_left_park(self, call_id: str) -> None:
        """The engine moved the leg (transfer, bridge) or it hung up: FreeSWITCH stops the
        tap, so the port may be reused. An analysis cut short this way is NOTSURE."""
        detector = self._detectors.get(call_id)
        if detector is not None:
            self._finish(call_id, detector.expire())
        self._end(call_id)

    def keep_only(self, live: set[str]) -> None:
        """After a resync: legs the switch no longer lists ended while the link was down (their
        hangup events are lost). End their analyses and free their ports, as a hangup would."""
        for call_id in [c for c in (*self._detectors, *self.tap.open_calls()) if c not in live]:
            self.on_hangup(call_id)
        self._done &= live
        # _wanted is left alone: a leg just originated may not be listed yet.

    def _end(self, call_id: str) -> None:
        self._detectors.pop(call_id, None)
        task = self._tasks.get(call_id)
        if task is not None:
            task.cancel()
        self.tap.release(call_id)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            # Cancelled at an await on the stream: it ends at once; bounded all the same.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 1.0)
        self._wanted.clear()
        self._detectors.clear()
        self._done.clear()

    async def _analyse(self, call_id: str, rate: int, detector: AmdDetector) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + detector.params.total_analysis_time / 1000
        try:
            stream = self.tap.open(call_id, rate)
            await self._send_unicast(call_id, self.tap.sendmsg_headers(stream))
            first = await stream.get(min(FIRST_FRAME_S, deadline - loop.time()))
            for _ in range(PORT_RETRIES):
                if first is not None or call_id in self._done or loop.time() >= deadline:
                    break
                # FreeSWITCH sends a frame every 20 ms from the unicast on (unicast-*.esl);
                # none means its bind of the local-port failed (+OK all the same), most
                # likely a tap of a previous engine process still holds it: another port.
                log.info(
                    "AMD on %s: no audio on local-port %d, trying another",
                    call_id,
                    stream.local_port,
                    extra={"call_id": call_id},
                )
                self.tap.release(call_id)
                stream = self.tap.open(call_id, rate)
                await self._send_unicast(call_id, self.tap.sendmsg_headers(stream))
                first = await stream.get(min(FIRST_FRAME_S, deadline - loop.time()))
        except (ActionFailed, PbxUnavailable) as err:
            # No audio will come: say so at once rather than after the analysis time.
            log.warning(
                "AMD on %s: could not start the media tap: %s",
                call_id,
                err,
                extra={"call_id": call_id},
            )
            self.tap.release(call_id)
            self._finish(call_id, detector.expire())
            return
        if call_id in self._done:
            return
        verdict: AmdVerdict | None = None
        if first is not None:
            verdict = detector.feed(decode_l16(first), stream.rate)
        while verdict is None:
            frame = await stream.read(deadline - loop.time())
            if call_id in self._done:
                return  # ended meanwhile by a hangup or a transfer
            if frame is None:
                # Nothing within the analysis time (or the stream closed under us).
                verdict = detector.expire()
                break
            verdict = detector.feed(frame, stream.rate)
        self._finish(call_id, verdict)

    def _finish(self, call_id: str, verdict: AmdVerdict) -> None:
        """Publish the one AmdResult of the leg (later verdicts are ignored)."""
        if call_id in self._done:
            return
        self._done.add(call_id)
        self._publish(
            base.AmdResult(
                switch=self.switch,
                call_id=call_id,
                ts=self._clock(),
                status=verdict.status,
                cause=verdict.cause,
            )
        )
