"""Real SIP agent phones for ACD tests: SIPp user agents the sandbox Asterisk dials.

    async with AgentPhones([AgentSpec("agent1"), AgentSpec("agent2", mode="ring")]) as phones:
        ...originate to DialTarget("endpoint", "agent1") ...
        await phones["agent1"].wait_for("ANSWERED")

Each phone is one ``sipp`` process (Debian package ``sip-tester``) running a UAS scenario from
tests/sipp/ on 127.0.0.1:(5200 + N) for ``agentN``, the static contact of PJSIP endpoint
``agentN`` in telephony-config/asterisk/pjsip.conf. Modes:

``answer``         180, then 200 OK at once; stays up until the switch sends BYE.
``answer-hangup``  the same, then the phone hangs up itself ``hold_s`` seconds after answering
                   (unless the switch hung up first).
``ring``           180 only, never answers; a CANCEL gets 200 and the INVITE 487.
``media``          answers like ``answer``, with a real audio path: its SDP names ``rtp_port``, a
                   UDP socket the test owns (tests/rtp_media.py), and the switch's own media
                   address is logged as a ``MEDIA <ip> <port>`` step.

Besides ``agentN`` (PJSIP endpoints agent1..agent8, port 5200 + N), the sandbox has
``supervisorN`` (5250 + N: the phone a supervisor's listen / whisper / barge rings) and
``customerN`` (5260 + N: a caller's phone in tests that must hear the caller's side).

What a phone saw is read from the scenario's ``<log>`` lines (SIPp ``-trace_logs``), one line per
step: ``<sip-call-id> INVITE``, ``ANSWERED``, ``BYE-RECEIVED``, ``BYE-SENT``,
``CANCELLED``. :meth:`SippAgent.wait_for` waits for such a line (polling the log file: SIPp
writes it, we cannot be told), never for a fixed time.

This module is stdlib only, so scripts/sip-agents can run the same phones by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SCENARIOS = Path(__file__).resolve().parent / "sipp"
HOST = "127.0.0.1"
#: agentN listens on AGENT_PORT_BASE + N (pjsip.conf). Not 5095+: 5099 is dead-trunk's port.
AGENT_PORT_BASE = 5200
#: SIPp binds a media port and a control port of its own; kept outside the sandbox's RTP range
#: (rtp.conf 10000-14999) and apart per phone (SIPp takes media port .. +3 for audio and video).
MEDIA_PORT_BASE = 16000
CONTROL_PORT_BASE = 18000
MAX_AGENTS = 8

Mode = Literal["answer", "answer-hangup", "ring", "media"]
MODES: tuple[Mode, ...] = ("answer", "answer-hangup", "ring", "media")
Step = Literal["INVITE", "ANSWERED", "BYE-RECEIVED", "BYE-SENT", "CANCELLED", "MEDIA"]
STEPS: tuple[Step, ...] = ("INVITE", "ANSWERED", "BYE-RECEIVED", "BYE-SENT", "CANCELLED", "MEDIA")
#: Phone name prefix -> (SIP port base, how many): pjsip.conf's static contacts.
PHONE_KINDS: dict[str, tuple[int, int]] = {
    "agent": (AGENT_PORT_BASE, MAX_AGENTS),
    "supervisor": (5250, 2),
    "customer": (5260, 2),
}

_SCENARIO_FILE: dict[Mode, str] = {
    "answer": "agent-answer.xml",
    "answer-hangup": "agent-answer-hangup.xml",
    "ring": "agent-ring-forever.xml",
    "media": "phone-media.xml",
}
_NAME = re.compile(r"(agent|supervisor|customer)([1-9][0-9]*)")
_LINE = re.compile(r"^(\S+) (" + "|".join(STEPS) + r")(?: (.*))?$")


class AgentError(RuntimeError):
    """A phone could not start, or did not do what a test waited for."""


def sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        raise AgentError("sipp not found: install Debian package sip-tester (scripts/host-deps)")
    return found


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One phone: ``name`` is the PJSIP endpoint (``agent1`` .. ``agent8``, ``supervisor1``,
    ``supervisor2``, ``customer1``, ``customer2``)."""

    name: str
    mode: Mode = "answer"
    hold_s: float = 0.0  # answer-hangup only: seconds from answer to the phone's BYE
    rtp_port: int = 0  # media only: the test's UDP port the phone's SDP names

    def __post_init__(self) -> None:
        m = _NAME.fullmatch(self.name)
        kinds = ", ".join(f"{k}1..{k}{n}" for k, (_, n) in PHONE_KINDS.items())
        if m is None or not 1 <= int(m.group(2)) <= PHONE_KINDS[m.group(1)][1]:
            raise ValueError(f"phone name {self.name!r}: expected one of {kinds} (pjsip.conf)")
        if self.mode not in MODES:
            raise ValueError(f"agent {self.name} mode {self.mode!r}: expected one of {MODES}")
        if self.mode == "answer-hangup" and self.hold_s <= 0:
            raise ValueError(f"agent {self.name}: mode answer-hangup needs hold_s > 0")
        if (self.mode == "media") != (self.rtp_port > 0):
            raise ValueError(f"phone {self.name}: rtp_port is given with mode media, and only then")

    @property
    def index(self) -> int:
        """The phone's offset from 5200 (agentN: N, supervisorN: 50 + N, customerN: 60 + N),
        which also places its SIPp media and control ports."""
        m = _NAME.fullmatch(self.name)
        assert m is not None
        return PHONE_KINDS[m.group(1)][0] - AGENT_PORT_BASE + int(m.group(2))

    @property
    def port(self) -> int:
        return AGENT_PORT_BASE + self.index


@dataclass(frozen=True, slots=True)
class AgentStep:
    """One line of a phone's log: which SIP call, what happened, any extra text."""

    sip_call_id: str
    step: Step
    detail: str = ""


def parse_log(text: str) -> list[AgentStep]:
    """The scenario's ``<log>`` lines -> steps (other lines, e.g. SIPp's banners, skipped)."""
    steps: list[AgentStep] = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m is not None:
            steps.append(AgentStep(m.group(1), m.group(2), m.group(3) or ""))  # type: ignore[arg-type]
    return steps


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return True
            raise
    return False


class SippAgent:
    """One SIPp phone process (start/stop pair; see the module docstring)."""

    def __init__(self, spec: AgentSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.log_path = workdir / f"{spec.name}.log"
        self.err_path = workdir / f"{spec.name}.errors"
        self.out_path = workdir / f"{spec.name}.out"
        self.process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        scenario = SCENARIOS / _SCENARIO_FILE[self.spec.mode]
        if self.spec.mode == "answer-hangup":
            # SIPp's <recv timeout> takes a number, not a variable: write a copy with it in.
            text = scenario.read_text().replace("HOLD_MS", str(round(self.spec.hold_s * 1000)))
            scenario = self.workdir / f"{self.spec.name}-scenario.xml"
            scenario.write_text(text)
        elif self.spec.mode == "media":
            text = scenario.read_text().replace("RTP_PORT", str(self.spec.rtp_port))
            scenario = self.workdir / f"{self.spec.name}-scenario.xml"
            scenario.write_text(text)
        return [
            sipp_binary(),
            "-sf",
            str(scenario),
            "-i",
            HOST,
            "-p",
            str(self.spec.port),
            "-mp",
            str(MEDIA_PORT_BASE + 10 * self.spec.index),
            "-cp",
            str(CONTROL_PORT_BASE + self.spec.index),
            # No terminal: no keyboard control, statistics screen to a file.
            "-nostdin",
            "-trace_logs",
            "-log_file",
            str(self.log_path),
            "-trace_err",
            "-error_file",
            str(self.err_path),
        ]

    async def start(self, timeout_s: float = 10.0) -> None:
        if _port_taken(self.spec.port):
            raise AgentError(
                f"{self.spec.name}: UDP {HOST}:{self.spec.port} is already in use "
                "(another sip-agents run?)"
            )
        self.log_path.write_text("")
        with self.out_path.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
            )
        # Ready once SIPp holds its SIP port (or it died: say why).
        deadline = time.monotonic() + timeout_s
        while not _port_taken(self.spec.port):
            if self.process.returncode is not None:
                raise AgentError(f"{self.spec.name}: sipp exited at start: {self._output()}")
            if time.monotonic() > deadline:
                raise AgentError(f"{self.spec.name}: sipp did not bind {self.spec.port}")
            await asyncio.sleep(0.02)

    def _output(self) -> str:
        parts = []
        for path in (self.out_path, self.err_path):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-2000:])
        return " | ".join(p.strip() for p in parts if p.strip())

    async def stop(self) -> None:
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        # Only this phone's own process, by its pid.
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def steps(self) -> list[AgentStep]:
        try:
            return parse_log(self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return []

    def calls(self) -> list[str]:
        """SIP Call-IDs of the INVITEs this phone received, in order."""
        return [s.sip_call_id for s in self.steps() if s.step == "INVITE"]

    async def wait_for(
        self, step: Step, *, count: int = 1, sip_call_id: str = "", timeout_s: float = 20.0
    ) -> AgentStep:
        """The ``count``-th ``step`` (of ``sip_call_id`` if given); AgentError on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [
                s
                for s in self.steps()
                if s.step == step and (not sip_call_id or s.sip_call_id == sip_call_id)
            ]
            if len(found) >= count:
                return found[count - 1]
            if not self.running:
                raise AgentError(f"{self.spec.name}: sipp ended: {self._output()}")
            if time.monotonic() > deadline:
                raise AgentError(
                    f"{self.spec.name}: no {step} #{count} within {timeout_s:g}s; "
                    f"steps so far: {[(s.step, s.sip_call_id) for s in self.steps()]}"
                )
            await asyncio.sleep(0.02)


class AgentPhones:
    """Several phones started and stopped together (an async context manager)."""

    def __init__(self, specs: Iterable[AgentSpec], workdir: Path | None = None) -> None:
        self.specs = list(specs)
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be unique, got {names}")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sip-agents-")
            workdir = Path(self._tmp.name)
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.agents = {s.name: SippAgent(s, workdir) for s in self.specs}

    def __getitem__(self, name: str) -> SippAgent:
        return self.agents[name]

    def __iter__(self) -> Iterator[SippAgent]:
        return iter(self.agents.values())

    async def start(self) -> None:
        try:
            for agent in self.agents.values():
                await agent.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for agent in self.agents.values():
            with contextlib.suppress(ProcessLookupError):
                await agent.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> AgentPhones:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
