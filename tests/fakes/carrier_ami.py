"""A fake AMI peer that plays the loopback carrier by number.

It is :class:`FakeAmiServer` with one change: an Originate is answered with
the recorded transcript of the outcome its number asks for (the carrier table
in tests/fixtures/asterisk-22/README.md), so one fake serves every outcome.
The bytes are still the real recording, rewritten only where Asterisk itself
would differ (ActionID, and the Uniqueid set by ChannelId).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass
class CarrierFakeAmi(FakeAmiServer):
    def __post_init__(self) -> None:
        super().__post_init__()
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
