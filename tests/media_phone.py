"""A SIPp phone with a real audio path, as the live supervisor and wallboard tests use it: the
phone's SIP side (tests/sip_agents.py, mode ``media``) and its RTP socket (tests/rtp_media.py).

    phone = MediaPhone(phones["supervisor1"], media)
    await phone.answered_and_talking(1700)     # waits for the answer, then says 1700 Hz
    phone.hears(440) > HEARS                    # judged on the last WINDOW_S of audio received
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.rtp_media import RtpMedia, rms, tone_ratio
from tests.sip_agents import SippAgent

WINDOW_S = 0.6  # audio judged per look
HEARS = 0.08  # share of the received energy at a frequency that counts as hearing it
SILENT = 0.02  # ... and as not hearing it


@dataclass
class MediaPhone:
    agent: SippAgent
    media: RtpMedia

    async def answered_and_talking(self, freq_hz: float, nth: int = 1) -> None:
        """Wait for the ``nth`` call's answer, then say ``freq_hz`` to the switch's RTP
        address for that call."""
        step = await self.agent.wait_for("MEDIA", count=nth)
        await self.agent.wait_for("ANSWERED", sip_call_id=step.sip_call_id)
        ip, port = step.detail.split()
        self.media.talk((ip, int(port)), freq_hz)

    def hears(self, freq_hz: float) -> float:
        """The share of the last WINDOW_S of received audio at ``freq_hz`` (0 for near
        silence, so comfort noise is not judged)."""
        now = time.monotonic()
        audio = self.media.heard(now - WINDOW_S, now)
        return tone_ratio(audio, freq_hz) if rms(audio) > 50 else 0.0
