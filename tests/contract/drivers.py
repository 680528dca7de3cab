"""``DriverUnderTest``: one adapter per switch kind for the driver contract suite.

A scenario in ``tests/contract/test_*.py`` is written once against this adapter and runs
on every switch. The adapter knows, per switch:

* how to start the driver connected to its peer (the real Asterisk sandbox; the fake
  FreeSWITCH, or a real one when ``ENGINE_TEST_FREESWITCH=host:port:password`` is set),
  always through a :class:`LinkProxy` so the suite can cut the link and see every byte
  the driver wrote;
* how to express each scenario's dial target (:data:`TARGETS`);
* how to run the IVR server (FastAGI / outbound socket) and route each session to the
  test that placed the call;
* how to restart the peer (Asterisk crash-restart / a new fake on the same port);
* what differs in the expected results (:data:`QUIRKS`, the ONE table of per-switch
  differences; test bodies never branch on the switch kind).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.pbx.asterisk.agi_server import FastAgiServer
from engine.pbx.asterisk.driver import AsteriskDriver
from engine.pbx.base import CallSession, DialTarget, LinkState, PbxDriver, PbxEvent
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from engine.pbx.freeswitch.outbound import OutboundServer
from tests.contract.link_proxy import LinkProxy
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.integration import sandbox
from tests.sip_agents import AgentPhones, AgentSpec, Mode

#: Hold music per class for the FreeSWITCH driver (QUIRKS["moh.class"]).
FS_MOH_STREAMS = {"default": "tone_stream://%(400,200,440,480);loops=-1"}
#: ``host:port:password`` of a real FreeSWITCH with telephony-config/freeswitch loaded.
FS_ENV = "ENGINE_TEST_FREESWITCH"
#: ``host:port`` a real FreeSWITCH can reach this machine on for outbound sockets
#: (default 127.0.0.1 and a free port: right when FreeSWITCH runs on this machine).
FS_IVR_ENV = "ENGINE_TEST_FREESWITCH_IVR"
#: The fake replays the recordings at their recorded speed: a 61XXX call is answered
#: after 1 s and cleared 4 s later, exactly as long as on a real switch, which leaves
#: time to hang up, record or cut the link while the call is up.
FAKE_TIME_SCALE = 1.0

IvrHandler = Callable[[CallSession], Awaitable[None]]

# ---------------------------------------------------------------------------------------
# Dial targets: scenario -> where each switch's test carrier gives that outcome.
# Asterisk: PJSIP trunk self-trunk (telephony-config/asterisk/carrier-test.conf).
# FreeSWITCH: sofia gateway "carrier" (telephony-config/freeswitch/dialplan/public/...).
# ---------------------------------------------------------------------------------------

TARGETS: dict[str, dict[str, DialTarget]] = {
    # Answers after ~1 s ringing and stays up long enough for the test to act
    # (Asterisk: ~30 s of prompt; FreeSWITCH: 4 s of tone), then clears by itself.
    "answered": {
        "asterisk": DialTarget("trunk", "self-trunk", "1001"),
        "freeswitch": DialTarget("trunk", "carrier", "61001"),
    },
    "busy": {
        "asterisk": DialTarget("trunk", "self-trunk", "2001"),
        "freeswitch": DialTarget("trunk", "carrier", "62001"),
    },
    "congestion": {
        "asterisk": DialTarget("trunk", "self-trunk", "3001"),
        "freeswitch": DialTarget("trunk", "carrier", "63001"),
    },
    "noanswer": {
        "asterisk": DialTarget("trunk", "self-trunk", "4001"),
        "freeswitch": DialTarget("trunk", "carrier", "64001"),
    },
    # Nothing listens behind the trunk: no channel is ever created.
    "dead": {
        "asterisk": DialTarget("trunk", "dead-trunk", "1001"),
        "freeswitch": DialTarget("trunk", "rig_down", "61001"),
    },
    # Answers, waits 1 s, sends DTMF 1234# (250 ms apart), hangs up ~3 s later.
    "dtmf": {
        "asterisk": DialTarget("trunk", "self-trunk", "5001"),
        "freeswitch": DialTarget("trunk", "carrier", "65001"),
    },
    # ACD callers. Answers after ~1 s and stays up 30-60 s: a customer to hold and bridge.
    "caller": {
        "asterisk": DialTarget("trunk", "self-trunk", "0101"),
        "freeswitch": DialTarget("trunk", "carrier", "66001"),
    },
    # Answers after ~1 s and hangs up by itself 9-10 s later (while talking to an agent).
    "caller_leaves": {
        "asterisk": DialTarget("trunk", "self-trunk", "0201"),
        "freeswitch": DialTarget("trunk", "carrier", "60001"),
    },
    # Answers and talks at length: AMD says MACHINE (Asterisk: a long prompt; FreeSWITCH: the
    # 25 s tone, a "greeting" that never pauses).
    "machine": {
        "asterisk": DialTarget("trunk", "self-trunk", "6001"),
        "freeswitch": DialTarget("trunk", "carrier", "69001"),
    },
    # An agent's phone (SIPp on the sandbox; the recorded agent on the fake): each ACD test
    # runs its phones through DriverUnderTest.agents().
    "agent1": {
        "asterisk": DialTarget("endpoint", "agent1"),
        "freeswitch": DialTarget("endpoint", "agent1"),
    },
    "agent2": {
        "asterisk": DialTarget("endpoint", "agent2"),
        "freeswitch": DialTarget("endpoint", "agent2"),
    },
}

# ---------------------------------------------------------------------------------------
# Expected results, the same on both switches (the contract itself).
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How an originate to a scenario's target must end."""

    failed: bool  # OriginateFailed (no channel) instead of ChannelCreated ... HungUp
    cause: int | None  # Q.850; None: per switch, see QUIRKS["dead.cause"]
    sip_codes: frozenset[int | None] | None  # None: per switch, see QUIRKS
    answered: bool


OUTCOMES: dict[str, Outcome] = {
    # The test hangs the answered call up itself (cause 16) instead of waiting.
    "answered": Outcome(False, 16, None, True),
    "busy": Outcome(False, 17, frozenset({486}), False),
    "congestion": Outcome(False, 34, frozenset({503}), False),
    "noanswer": Outcome(False, 19, None, False),
    "dead": Outcome(True, None, frozenset({None}), False),
}


# ---------------------------------------------------------------------------------------
# THE per-switch differences. Every expectation that is not the same on both switches is
# a row here, with the reason; docs/contract-suite.md embeds render_quirks_table().
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quirk:
    asterisk: Any
    freeswitch: Any
    why: str


QUIRKS: dict[str, Quirk] = {
    "dead.cause": Quirk(
        38,
        27,
        "Asterisk creates no channel and only says OriginateResponse Failure, Reason 0 "
        "(originate-deadtrunk.ami), which the driver reports as 38 NETWORK_OUT_OF_ORDER; "
        "FreeSWITCH's job answers -ERR GATEWAY_DOWN, reported as 27 "
        "DESTINATION_OUT_OF_ORDER (causes.py).",
    ),
    "noanswer.sip_codes": Quirk(
        frozenset({480}),
        frozenset({None}),
        "Both cancel the INVITE at the originate timeout (Q.850 19). Asterisk puts TechCause "
        "480 on the originating leg's Hangup (originate-noanswer.ami; only the far end's leg "
        "gets 487); FreeSWITCH sets no sip_term_status for a leg that got no final response.",
    ),
    "answered.sip_codes": Quirk(
        frozenset({None}),
        frozenset({None}),
        "After an engine hangup of an answered call neither switch reports a SIP code on our "
        "leg: Asterisk's Hangup event has no TechCause, and FreeSWITCH's leg that sends the "
        "BYE has no sip_term_status (originate-answered-engine-hangup.esl; only the far leg, "
        "which received the BYE, has 200).",
    ),
    "dtmf.far_end_digits": Quirk(
        "1234#",
        "1234",
        "Both carriers send 1234#. Asterisk reports every DTMFEnd, '#' included. The real "
        "FreeSWITCH transcript (dtmf-from-far-end.esl) carries DTMF events for 1, 2, 3, 4 "
        "only: they came 640 ms apart, so '#' was due at 4.06 s, and the far end hung up at "
        "4.02 s. The suite asserts what the recording shows.",
    ),
    "record.dir": Quirk(
        "/var/spool/asterisk/monitor",
        "/tmp",
        "Recording files are written by the switch, so the path must exist on the switch: "
        "the sandbox chroot's monitor dir; /tmp on FreeSWITCH (the fake writes the file the "
        "third batch's recordings show, tests/fakes/fake_recorder.py).",
    ),
    "record.gap_pause_events": Quirk(
        ("RecordingStopped", "RecordingStarted"),
        (),
        "A pause that leaves a gap: MixMonitor has no pause, so Asterisk's is a StopMixMonitor "
        "and the resume a MixMonitor appending to the same file (MixMonitorStop, then "
        "MixMonitorStart); FreeSWITCH's uuid_record pause/resume fire no event "
        "(record-stereo-pause-resume.esl). Mute (silence) fires none on either.",
    ),
    "gather.prompt": Quirk(
        "silence/1",
        "silence_stream://250",
        "Each switch's own built-in 'play nothing' prompt; the prompt is a switch-native "
        "sound name (GET DATA vs play_and_get_digits).",
    ),
    "ivr.server": Quirk(
        "FastAgiServer (AGI via context engine-ivr)",
        "OutboundServer (&socket(host:port async full))",
        "The CallSession façade is served by FastAGI on Asterisk and the outbound socket on "
        "FreeSWITCH; both bind a free port here (not 4573/8084) so the suite never clashes "
        "with other tests using the default ports, and the driver passes that port along.",
    ),
    "moh.class": Quirk(
        "default (musiconhold.conf: core prompts)",
        "default -> tone_stream://%(400,200,440,480);loops=-1",
        "The same class name on both. Asterisk plays its musiconhold.conf class; the FreeSWITCH "
        "driver maps classes to streams (moh_streams), and the suite maps `default` to the "
        "looping tone the recordings used, because local_stream://moh has no files on the "
        "recording rig (moh-local-stream-missing.esl: FILE NOT FOUND, no PLAYBACK_START).",
    ),
    "agents.phones": Quirk(
        "SIPp UAS per agent on 127.0.0.1:52NN (tests/sip_agents.py)",
        "fake: the recorded SIPp agent (user/agentN); real switch: not provided",
        "The agents are real SIP phones on the sandbox. The fake replays the recorded SIPp "
        "agent of acd-moh-*.esl; against a real FreeSWITCH the suite has no phones to start.",
    ),
    "bridge.bridged_events": Quirk(
        "a BridgeEnter per leg; the second names the first",
        "ONE CHANNEL_BRIDGE, on the first leg; the driver adds the second leg's Bridged",
        "uuid_bridge fires CHANNEL_BRIDGE on its first leg only (acd-moh-bridge-*.esl); both "
        "drivers therefore give each leg a Bridged, and one of them names the other leg.",
    ),
    "peer.restart": Quirk(
        "sandbox.crash_restart(): SIGKILL + start",
        "fake: stop, new FakeFreeSwitch on the same port; real switch: skipped",
        "A crash is the case where no hangup event is ever sent and only the resync can "
        "tell the call is gone. A real FreeSWITCH cannot be restarted by the suite.",
    ),
}


def render_quirks_table() -> str:
    """:data:`QUIRKS` as a Markdown table (embedded verbatim in docs/contract-suite.md)."""

    def cell(value: Any) -> str:
        if isinstance(value, frozenset):
            value = "{" + ", ".join(sorted(str(v) for v in value)) + "}"
        return str(value).replace("|", "\\|")

    lines = ["| aspect | Asterisk 22 | FreeSWITCH 1.10 | why |", "|---|---|---|---|"]
    for key, q in QUIRKS.items():
        lines.append(f"| `{key}` | {cell(q.asterisk)} | {cell(q.freeswitch)} | {cell(q.why)} |")
    return "\n".join(lines) + "\n"


def render_targets_table() -> str:
    """:data:`TARGETS` as a Markdown table (embedded verbatim in docs/contract-suite.md)."""

    def cell(t: DialTarget) -> str:
        return f"`{t.kind}` `{t.name}` `{t.number}`"

    lines = ["| scenario | Asterisk 22 | FreeSWITCH 1.10 |", "|---|---|---|"]
    for scenario, per in TARGETS.items():
        lines.append(f"| {scenario} | {cell(per['asterisk'])} | {cell(per['freeswitch'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Event log: one consumer of a driver's event stream, waitable without polling.
# ---------------------------------------------------------------------------------------


class EventLog:
    """Every event a driver emitted since :meth:`start`, in order."""

    def __init__(self) -> None:
        self.events: list[PbxEvent] = []
        self._cond = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self, stream: AsyncIterator[PbxEvent]) -> None:
        self._task = asyncio.create_task(self._pump(stream))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _pump(self, stream: AsyncIterator[PbxEvent]) -> None:
        async for event in stream:
            async with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def of(self, call_id: str) -> list[PbxEvent]:
        return [e for e in self.events if e.call_id == call_id]

    def mark(self) -> int:
        """Index to pass as ``since`` to only look at events after this point."""
        return len(self.events)

    def _find(self, pred: Callable[[PbxEvent], bool], since: int) -> PbxEvent | None:
        return next((e for e in self.events[since:] if pred(e)), None)

    async def wait_for(
        self, pred: Callable[[PbxEvent], bool], what: str, timeout_s: float, since: int = 0
    ) -> PbxEvent:
        async def wait() -> PbxEvent:
            async with self._cond:
                await self._cond.wait_for(lambda: self._find(pred, since) is not None)
            found = self._find(pred, since)
            assert found is not None
            return found

        try:
            return await asyncio.wait_for(wait(), timeout_s)
        except TimeoutError:
            tail = [f"{e.type}({e.call_id})" for e in self.events[since:][-15:]]
            raise AssertionError(f"no {what} within {timeout_s:g}s; last events: {tail}") from None


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float) -> None:
    """Re-check a state of the switch until it holds (a condition, not a fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: still not true after {timeout_s:g}s")
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------
# The adapters
# ---------------------------------------------------------------------------------------


class DriverUnderTest:
    """A driver connected to its peer through a :class:`LinkProxy`, plus what the
    scenarios need around it. ``side`` is a second driver of the same kind connected to
    the peer directly (not through the proxy): it acts behind the engine's back, e.g.
    ends a call while the engine's link is down."""

    kind: ClassVar[str]
    #: False when the suite cannot restart the peer (a real FreeSWITCH).
    can_restart_peer: bool = True

    driver: PbxDriver
    side: PbxDriver
    proxy: LinkProxy

    def __init__(self) -> None:
        self.log = EventLog()
        self.side_log = EventLog()
        self._ivr_handlers: dict[str, IvrHandler] = {}
        self.ivr_unrouted: list[str] = []

    # -------------------------------------------------------------- per-switch data

    def target(self, scenario: str) -> DialTarget:
        return TARGETS[scenario][self.kind]

    def quirk(self, aspect: str) -> Any:
        return getattr(QUIRKS[aspect], self.kind)

    def outcome(self, scenario: str) -> Outcome:
        o = OUTCOMES[scenario]
        cause = o.cause if o.cause is not None else self.quirk(f"{scenario}.cause")
        sips = o.sip_codes if o.sip_codes is not None else self.quirk(f"{scenario}.sip_codes")
        return Outcome(o.failed, cause, sips, o.answered)

    def set_far_end_digits(self, target: DialTarget, digits: str) -> None:
        """Make the far end of ``target`` press ``digits`` once an IVR gather starts.
        No-op where the switch's own carrier dialplan already does it by number."""

    @contextlib.asynccontextmanager
    async def agents(self, modes: dict[str, Mode]) -> AsyncIterator[None]:
        """Agents' phones ``{"agent1": "answer", "agent2": "ring"}`` for one test."""
        raise NotImplementedError
        yield

    # ----------------------------------------------------------------------- IVR

    def on_ivr(self, call_id: str, handler: IvrHandler) -> None:
        """Run ``handler`` for the IVR session of ``call_id`` (register before originate)."""
        self._ivr_handlers[call_id] = handler

    async def _dispatch(self, session: CallSession) -> None:
        handler = self._ivr_handlers.pop(session.call_id, None)
        if handler is None:
            # Not ours (or a call id the switch did not keep): say so and end the call.
            self.ivr_unrouted.append(session.call_id)
            await session.hangup()
            return
        await handler(session)

    # ----------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        raise NotImplementedError

    async def _start_drivers(self) -> None:
        self.log.start(self.driver.events())
        self.side_log.start(self.side.events())
        await self.driver.start()
        await self.side.start()
        await self.wait_up(self.driver, 20)
        await self.wait_up(self.side, 20)

    @staticmethod
    async def wait_up(driver: PbxDriver, timeout_s: float) -> None:
        async def up() -> bool:
            return driver.state is LinkState.UP

        await until(up, f"{driver.name} link UP (now {driver.state})", timeout_s)

    async def close(self) -> None:
        for drv in (getattr(self, "driver", None), getattr(self, "side", None)):
            if drv is not None:
                with contextlib.suppress(Exception):
                    await drv.stop()
        await self.log.stop()
        await self.side_log.stop()
        if hasattr(self, "proxy"):
            await self.proxy.stop()

    async def restart_peer(self) -> None:
        """The switch dies without a word (no hangup events) and comes back empty."""
        raise NotImplementedError

    def originates_sent(self, call_id: str) -> int:
        """How many originates for ``call_id`` the peer received from the driver."""
        raise NotImplementedError


class AsteriskUnderTest(DriverUnderTest):
    kind = "asterisk"

    async def open(self) -> None:
        # Fail, never skip: `make test` starts the sandbox, a dead one is a bug. Other tests
        # restart the shared sandbox now and then, so give it time to come back first.
        reachable = await asyncio.to_thread(sandbox.wait_until, sandbox.ami_reachable, 90.0)
        assert reachable, (
            f"no AMI on {sandbox.AMI_HOST}:{sandbox.AMI_PORT}; run 'scripts/asterisk-sandbox start'"
        )
        # ... and its trunks qualified again (one CLI command when they already are).
        await asyncio.to_thread(sandbox.wait_qualified)
        self.ivr = FastAgiServer("127.0.0.1", 0, self._dispatch)
        await self.ivr.start()
        self.proxy = LinkProxy(sandbox.AMI_HOST, sandbox.AMI_PORT)
        await self.proxy.start()
        common: dict[str, Any] = {
            "username": sandbox.AMI_USER,
            "secret": sandbox.AMI_SECRET,
            "action_timeout_s": 10.0,
            "ping_interval_s": 5.0,
            "backoff_initial_s": 0.1,
            "backoff_max_s": 1.0,
        }
        self.driver = AsteriskDriver(
            "contract-ast",
            self.proxy.host,
            self.proxy.port,
            agi_host="127.0.0.1",
            agi_port=self.ivr.port,
            **common,
        )
        self.side = AsteriskDriver(
            "contract-ast-side", sandbox.AMI_HOST, sandbox.AMI_PORT, **common
        )
        await self._start_drivers()

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "ivr"):
            await self.ivr.stop(grace_s=1.0)

    async def restart_peer(self) -> None:
        # Blocking subprocess (kill + start + wait for AMI): off the event loop so the
        # driver keeps running its reconnect attempts meanwhile.
        await asyncio.to_thread(sandbox.crash_restart)
        # Until qualify has judged the trunks again, PJSIP refuses to dial them (the next
        # test's originate failed with "OriginateResponse Failure, Reason 0" under load).
        await asyncio.to_thread(sandbox.wait_qualified)

    @contextlib.asynccontextmanager
    async def agents(self, modes: dict[str, Mode]) -> AsyncIterator[None]:
        """Real SIPp phones (tests/sip_agents.py) for the PJSIP endpoints agentN."""
        async with AgentPhones(AgentSpec(name, mode) for name, mode in modes.items()):
            yield

    def originates_sent(self, call_id: str) -> int:
        messages = self.proxy.sent_text().split("\r\n\r\n")
        return sum(
            1
            for m in messages
            if "Action: Originate" in m.split("\r\n") and f"ChannelId: {call_id}" in m.split("\r\n")
        )


def _parse_fs_env(value: str) -> tuple[str, int, str]:
    host, sep1, rest = value.partition(":")
    port, sep2, password = rest.partition(":")
    if not (sep1 and sep2 and host and port.isdigit() and password):
        raise ValueError(
            f"{FS_ENV}={value!r}: expected host:port:password, e.g. 10.0.0.2:8021:ClueCon"
        )
    return host, int(port), password


def _parse_ivr_env(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not (sep and host and port.isdigit()):
        raise ValueError(f"{FS_IVR_ENV}={value!r}: expected host:port reachable from FreeSWITCH")
    return host, int(port)


class FreeSwitchUnderTest(DriverUnderTest):
    kind = "freeswitch"

    def __init__(self) -> None:
        super().__init__()
        self.fake: FakeFreeSwitch | None = None
        env = os.environ.get(FS_ENV, "").strip()
        self.real = _parse_fs_env(env) if env else None
        self.can_restart_peer = self.real is None

    async def open(self) -> None:
        if self.real is not None:
            host, port, password = self.real
            # Fail fast and say why, instead of one 20 s "link not UP" per test.
            try:
                _, probe = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            except (OSError, TimeoutError) as err:
                raise AssertionError(
                    f"{FS_ENV}: no FreeSWITCH event socket on {host}:{port} ({err!r})"
                ) from None
            probe.close()
        else:
            self.fake = FakeFreeSwitch(time_scale=FAKE_TIME_SCALE)
            await self.fake.start()
            host, port, password = self.fake.host, self.fake.port, self.fake.password
        ivr_env = os.environ.get(FS_IVR_ENV, "").strip()
        if ivr_env:
            advertised, ivr_port = _parse_ivr_env(ivr_env)
            self.ivr = OutboundServer(self._dispatch, "0.0.0.0", ivr_port)
        else:
            advertised = "127.0.0.1"
            self.ivr = OutboundServer(self._dispatch, "127.0.0.1", 0)
        await self.ivr.start()
        self.proxy = LinkProxy(host, port)
        await self.proxy.start()
        common: dict[str, Any] = {
            "command_timeout": 10.0,
            "backoff_initial": 0.1,
            "backoff_max": 1.0,
        }
        self.driver = FreeSwitchDriver(
            "contract-fs",
            self.proxy.host,
            self.proxy.port,
            password,
            ivr_host=advertised,
            ivr_port=self.ivr.port,
            moh_streams=FS_MOH_STREAMS,
            **common,
        )
        self.side = FreeSwitchDriver("contract-fs-side", host, port, password, **common)
        await self._start_drivers()

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "ivr"):
            await self.ivr.stop()
        if self.fake is not None:
            await self.fake.stop()

    @contextlib.asynccontextmanager
    async def agents(self, modes: dict[str, Mode]) -> AsyncIterator[None]:
        """The fake's agents: the recorded SIPp agent, answering or ringing forever."""
        if self.fake is None:
            raise AssertionError(f"{FS_ENV}: the suite has no agent phones for a real switch")
        for name, mode in modes.items():
            if mode == "answer-hangup":
                raise ValueError("answer-hangup was not recorded on FreeSWITCH")
            self.fake.agents[name] = "ring" if mode == "ring" else "answer"
        yield

    def set_far_end_digits(self, target: DialTarget, digits: str) -> None:
        """Nothing to set: the carrier decides by number. The real 65XXX dialplan keys
        1234# 640 ms apart and hangs up before the '#' (dtmf-from-far-end.esl), and the
        fake's 65XXX keeps to that recorded timeline."""

    async def restart_peer(self) -> None:
        if self.fake is None:
            raise RuntimeError("cannot restart a real FreeSWITCH from the suite")
        port = self.fake.port
        await self.fake.stop()
        self.fake = FakeFreeSwitch(port=port, time_scale=FAKE_TIME_SCALE)
        await self.fake.start()

    def originates_sent(self, call_id: str) -> int:
        var = re.compile(rf"[{{,]origination_uuid={re.escape(call_id)}[,}}]")
        messages = self.proxy.sent_text().split("\n\n")
        return sum(
            1 for m in messages if m.lstrip("\n").startswith("bgapi originate ") and var.search(m)
        )


DRIVERS: dict[str, type[DriverUnderTest]] = {
    "asterisk": AsteriskUnderTest,
    "freeswitch": FreeSwitchUnderTest,
}
