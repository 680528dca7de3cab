"""A fake AMI peer that plays the loopback carrier by number.

It is :class:`FakeAmiServer` with one change: an Originate is answered with
the recorded transcript of the outcome its number asks for (the carrier table
in tests/fixtures/asterisk-22/README.md), so one fake serves every outcome.
The bytes are still the real recording, rewritten only where Asterisk itself
would differ (ActionID, and the Uniqueid set by ChannelId).

``hold_s > 0`` keeps each call up that long: the recording is sent up to its
first hangup event, the rest ``hold_s`` later (a carrier whose callees stay
on the line). ``timeline`` records, on the event loop's clock, each Originate
received (+1) and each call's hangup sent (-1): the switch's own count of
calls in flight, independent of what the engine believes.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from engine.pbx.asterisk.ami_codec import Action
from tests.fakes.fake_ami import FakeAmiServer, Segment, Transcript, load_transcript

# First digit of the dialled number -> recorded scenario.
CARRIER = {
    "1": "originate-answered.ami",
    "2": "originate-busy.ami",
    "3": "originate-congestion.ami",
    "4": "originate-noanswer.ami",
    "5": "dtmf-from-far-end.ami",
    "6": "amd-machine.ami",
}
DEAD_TRUNK = "originate-deadtrunk.ami"

_NUMBER = re.compile(r"^PJSIP/(?P<number>[0-9]+)@(?P<trunk>.+)$")


def _originate_segment(transcript: Transcript) -> Segment:
    for action in transcript.actions:
        if action.name.lower() == "originate" and action.action_id:
            return transcript.segments[action.action_id]
    raise ValueError(f"{transcript.name} has no recorded Originate")


_HANGUP = re.compile(rb"Event: (SoftHangupRequest|HangupRequest|Hangup)\r\n")


@dataclass
class CarrierFakeAmi(FakeAmiServer):
    hold_s: float = 0.0
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._held: set[asyncio.Task[None]] = set()
        self._outcomes = {d: _originate_segment(load_transcript(n)) for d, n in CARRIER.items()}
        self._dead = _originate_segment(load_transcript(DEAD_TRUNK))

    def _scripted(self, action: Action) -> Segment | None:
        if action.name.lower() != "originate":
            return None
        match = _NUMBER.match(action.headers.get("Channel") or "")
        if match is None:
            return None
        if match["trunk"] == "dead-trunk":
            return self._dead
        return self._outcomes.get(match["number"][:1])

    async def _emit(self, writer: asyncio.StreamWriter, action: Action, data: bytes) -> None:
        if action.name.lower() != "originate":
            await super()._emit(writer, action, data)
            return
        loop = asyncio.get_running_loop()
        self.timeline.append((loop.time(), +1))
        cut = _HANGUP.search(data) if self.hold_s > 0 else None
        if cut is None:
            writer.write(data)
            self.timeline.append((loop.time(), -1))  # the whole call is in these bytes
            await writer.drain()
            return
        writer.write(data[: cut.start()])
        await writer.drain()

        async def hang_up_later() -> None:
            await asyncio.sleep(self.hold_s)
            if not writer.is_closing():
                self.timeline.append((loop.time(), -1))
                writer.write(data[cut.start() :])

        task = asyncio.create_task(hang_up_later())
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    def max_in_flight(self) -> int:
        """The most calls the switch had up at once (from ``timeline``)."""
        level = peak = 0
        for _, step in self.timeline:  # appended in the order it happened
            level += step
            peak = max(peak, level)
        return peak
