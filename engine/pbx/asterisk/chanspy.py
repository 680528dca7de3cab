"""ChanSpy's arguments for a supervisor's listen / whisper / barge. Pure.

``ChanSpy(<agent leg uniqueid>,<options>)`` runs on the supervisor's answered leg (AMI
Originate with ``Application: ChanSpy``). Options, each for a reason:

* ``u``: the first argument is a uniqueid or a full channel name, not a prefix. The engine
  gives the agent leg's call id, which IS the channel's Uniqueid (``ChannelId`` at the
  originate): an exact match taken from the engine's own records, never a prefix that could
  also match another channel (``PJSIP/agent1`` is a prefix of ``PJSIP/agent10-...``).
* ``q``: no beep and no spoken channel name when spying starts: the supervisor hears the
  call at once, and nobody hears a beep.
* ``E``: exit when the spied-on channel hangs up, so the supervisor's phone is hung up with
  the agent's call instead of waiting for another channel.
* ``S``: stop when no channel is left to spy on: a target that ended between the API call
  and the answer makes ChanSpy return at once (without it ChanSpy would wait for it forever).
* ``d``: DTMF 4 / 5 / 6 switch between spy / whisper / barge. The engine switches a running
  session by making the supervisor's leg *receive* that digit (AMI ``PlayDTMF`` with
  ``Receive: true``), and the supervisor can press the same keys on the phone.
* ``w`` (whisper) / ``B`` (barge): the starting mode; none is listen.

Checked on the sandbox Asterisk 22 with real RTP (tests/integration/test_supervisor_live.py):
listen hears both parties; whisper reaches the agent only; barge reaches both; the digits
switch the mode mid-session. Like FreeSWITCH's eavesdrop, a whisper rides on the frames
written to the hearing party: a party whose peer sends no audio at all (no RTP, no comfort
noise) hears no whisper either. Real phones send RTP while the call is up.
"""

from __future__ import annotations

from engine.pbx.base import SpyMode

BASE_OPTIONS = "quESd"
_START: dict[SpyMode, str] = {SpyMode.LISTEN: "", SpyMode.WHISPER: "w", SpyMode.BARGE: "B"}
#: ChanSpy's ``d`` digits: 4 spy, 5 whisper, 6 barge.
_DIGITS: dict[SpyMode, str] = {SpyMode.LISTEN: "4", SpyMode.WHISPER: "5", SpyMode.BARGE: "6"}


def options(mode: SpyMode) -> str:
    return BASE_OPTIONS + _START[mode]


def mode_digit(mode: SpyMode) -> str:
    return _DIGITS[mode]
