"""What one dial attempt came to, from what the switch reported. Pure.

The Q.850 cause and the SIP final response of the outbound leg decide an unanswered call; an
answered one is a machine only on the detector's explicit MACHINE verdict (NOTSURE goes to a
person: a live dialer must not hang up on a human it is unsure of). HANGUP is app_amd's verdict
for a call that ended while the detector still listened: nobody was handed to an agent, so it is
neither a person reached nor a call the dialer abandoned (47 CFR 64.1200(a)(7) counts a call
abandoned when no agent is there within two seconds after the completed greeting; the analysis
ends at most after_greeting_silence, 800 ms, after it). It is NO_ANSWER, retried as one. The
safe-harbour release turns a HUMAN into ABANDONED later, in the runner, and the runner also
turns a HUMAN into NO_ANSWER when the call ended before any hand-over (no verdict yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.campaigns.model import Outcome

#: The detector's verdict for a call that ended during the analysis (app_amd's AMDSTATUS,
#: engine/pbx/freeswitch/amd.py likewise).
AMD_HANGUP = "HANGUP"

# Q.850 causes (ITU-T Q.850 table 1) as Asterisk and FreeSWITCH report them.
_BUSY_CAUSES = frozenset({17})  # USER_BUSY
_NO_ANSWER_CAUSES = frozenset({16, 18, 19, 102})  # clearing/no user response/no answer/timer
_DECLINED_CAUSES = frozenset({21})  # CALL_REJECTED (SIP 603 Decline)
_INVALID_CAUSES = frozenset({1, 3, 22, 28})  # unallocated, no route, number changed, invalid
# SIP final responses (RFC 3261 and friends): more precise than the cause when present.
_BUSY_SIP = frozenset({486, 600})
_NO_ANSWER_SIP = frozenset({408, 480, 487})
_DECLINED_SIP = frozenset({603})
_INVALID_SIP = frozenset({404, 410, 484, 604})


# The SIP response is checked first (more precise), then the cause.
_BY_SIP = (
    (_BUSY_SIP, Outcome.BUSY),
    (_DECLINED_SIP, Outcome.DECLINED),
    (_NO_ANSWER_SIP, Outcome.NO_ANSWER),
    (_INVALID_SIP, Outcome.INVALID_NUMBER),
)
_BY_CAUSE = (
    (_BUSY_CAUSES, Outcome.BUSY),
    (_DECLINED_CAUSES, Outcome.DECLINED),
    (_NO_ANSWER_CAUSES, Outcome.NO_ANSWER),
    (_INVALID_CAUSES, Outcome.INVALID_NUMBER),
)


@dataclass(frozen=True, slots=True)
class DialResult:
    """The facts of one ended or answered attempt (from the engine's Call record)."""

    answered: bool
    cause: int | None = None
    sip_code: int | None = None
    amd_status: str | None = None
    interrupted: bool = False


def classify(result: DialResult) -> Outcome:
    if result.interrupted:
        return Outcome.INTERRUPTED
    if result.answered:
        status = (result.amd_status or "").upper()
        if status == "MACHINE":
            return Outcome.MACHINE
        if status == AMD_HANGUP:
            return Outcome.NO_ANSWER
        return Outcome.HUMAN
    for codes, outcome in _BY_SIP:
        if result.sip_code in codes:
            return outcome
    for codes, outcome in _BY_CAUSE:
        if result.cause in codes:
            return outcome
    # Congestion (34), network out of order (38), temporary failure (41), 5xx, no trunk...:
    # the carrier's doing, not the contact's.
    return Outcome.CARRIER_FAILURE
