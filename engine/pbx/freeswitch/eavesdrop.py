"""``eavesdrop``'s selectors for a supervisor's listen / whisper / barge. Pure.

Recorded on FreeSWITCH 1.10.12 (tests/fixtures/freeswitch-1.10/transcripts/eavesdrop-*.esl,
README "Third batch"): the supervisor's leg S is originated straight into the application,
``{origination_uuid=S,...}<dial> &eavesdrop(<agent leg>)``, with the agent's leg as the
target. "aleg"/"bleg" are relative to that TARGET, not to the call:

| mode | variable on S before eavesdrop | digit received by S | who hears the supervisor |
|---|---|---|---|
| listen | none | 0 | nobody |
| whisper | ``eavesdrop_whisper_bleg=true`` (ED_MUX_WRITE) | 2 | the agent (coach) |
| barge | both ``eavesdrop_whisper_aleg`` and ``_bleg`` | 3 | both parties |

(``eavesdrop_whisper_aleg`` alone / digit 1 would let only the CALLER hear the supervisor:
not offered.) A running session switches mode when S *receives* the digit: ``uuid_recv_dtmf
S <d>`` (recorded: ``+OK <S> received DTMF <d>.`` and a DTMF event on S); ``uuid_send_dtmf``
sends it out to S's phone and never reaches the loop. The recorded whisper reaches the agent
only while frames flow toward the agent: a bridge whose caller side sends no RTP carried it
only when ``bridge_generate_comfort_noise`` had been set on both legs before the bridge
(eavesdrop-whisper-agent-caller-silent.esl vs eavesdrop-whisper-agent.esl).
"""

from __future__ import annotations

from engine.pbx.base import SpyMode

_VARIABLES: dict[SpyMode, tuple[tuple[str, str], ...]] = {
    SpyMode.LISTEN: (),
    SpyMode.WHISPER: (("eavesdrop_whisper_bleg", "true"),),
    SpyMode.BARGE: (("eavesdrop_whisper_aleg", "true"), ("eavesdrop_whisper_bleg", "true")),
}
_DIGITS: dict[SpyMode, str] = {SpyMode.LISTEN: "0", SpyMode.WHISPER: "2", SpyMode.BARGE: "3"}


def variables(mode: SpyMode) -> tuple[tuple[str, str], ...]:
    """The originate variables that start the session in ``mode`` (recorded order)."""
    return _VARIABLES[mode]


def mode_digit(mode: SpyMode) -> str:
    return _DIGITS[mode]
