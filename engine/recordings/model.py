"""Recordings: frozen values and the rules' vocabulary (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: always: every call of the queue/campaign is recorded from the answer (or the agent's
#: bridge); on_demand: only when the API (or an IVR ``record`` step) starts it; never: the
#: API's start is refused.
Policy = Literal["always", "on_demand", "never"]
#: silence: a paused stretch stays in the file as digital silence (the timeline is kept);
#: gap: it is left out (the file is shorter). Card numbers (PCI DSS) need either.
PauseMode = Literal["silence", "gap"]
#: mono: both parties mixed; dual: channel 1 what the engine's leg received (the far end),
#: channel 2 what it sent.
Channels = Literal["mono", "dual"]
Action = Literal["start", "stop", "pause", "resume"]
#: recording -> (paused <-> recording) -> finishing (encrypting) -> ready; deleted at the end
#: (data key destroyed); failed when the switch's file never showed up or could not be read.
State = Literal["recording", "paused", "finishing", "ready", "deleted", "failed"]
#: call: a call's recording (API or policy); voicemail: a message of the IVR ``record`` step.
Kind = Literal["call", "voicemail"]


@dataclass(frozen=True, slots=True)
class RecordingRules:
    policy: Policy
    pause: PauseMode
    channels: Channels
    consent_prompt: str
    retention_days: int


@dataclass(frozen=True, slots=True)
class Recording:
    """One row of the recordings index."""

    recording_id: str
    call_id: str
    switch: str
    agent_id: str | None
    queue: str | None
    campaign: str | None
    started_at: float
    ended_at: float | None
    duration_s: float | None
    channels: Channels
    pause_mode: PauseMode
    state: State
    key_id: str | None
    size: int | None
    encrypted_size: int | None
    sha256: str | None
    legal_hold: bool
    retention_days: int
    sample_rate: int | None = None
    error: str | None = None
    kind: Kind = "call"
    flow: str | None = None  # voicemail: the IVR flow that took it
    ended_by: str | None = None  # voicemail: hangup | silence | None (the switch did not say)
