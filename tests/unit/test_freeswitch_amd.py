"""FreeSWITCH AMD: the recorded unicast streams through the decoders, and the driver's
Amd() path against the fake ESL peer (which streams like unicast-*.esl)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.pbx import base
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from engine.pbx.freeswitch.media_tap import MediaTap, decode_l16, decode_native_pcmu
from engine.speech.amd import FAST, AmdOverrides, AmdParams
from engine.speech.wav import Pcm, encode_wav
from tests.fakes.fake_esl import FakeFreeSwitch

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "freeswitch-1.10" / "transcripts"


def _datagrams(name: str) -> list[bytes]:
    """The .udp.raw file cut at the sizes its .udp.log lists (one line per datagram)."""
    raw = (TRANSCRIPTS / f"{name}.udp.raw").read_bytes()
    sizes = [
        int(line.split()[2])
        for line in (TRANSCRIPTS / f"{name}.udp.log").read_text().split("\n")
        if line
    ]
    assert sum(sizes) == len(raw)
    out, pos = [], 0
    for size in sizes:
        out.append(raw[pos : pos + size])
        pos += size
    return out


def _pitch(samples: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize(
    ("name", "size", "rate", "decode"),
    [
        ("unicast-native-pcmu", 160, 8000, decode_native_pcmu),
        ("unicast-l16-pcmu", 320, 8000, decode_l16),
        ("unicast-l16-g722", 640, 16000, decode_l16),
    ],
)
def test_recorded_streams_decode_to_the_far_ends_tone(name, size, rate, decode) -> None:  # type: ignore[no-untyped-def]
    grams = _datagrams(name)
    assert {len(g) for g in grams} == {size}  # one 20 ms frame each, no RTP header
    audio = np.concatenate([decode(g) for g in grams])
    assert len(audio) == rate // 50 * len(grams)
    # README: peak 10364, about 440 Hz (the 69XXX far end's tone).
    assert abs(int(np.abs(audio.astype(np.int32)).max()) - 10364) <= 40
    assert abs(_pitch(audio, rate) - 440) < 5


def test_big_endian_reading_is_noise() -> None:
    # The README's warning: read as network order the L16 tap is not the tone.
    grams = _datagrams("unicast-l16-pcmu")
    wrong = np.frombuffer(b"".join(grams), dtype=">i2").astype(np.int32)
    assert abs(int(np.abs(wrong).max()) - 10364) > 5000


def _wav(*parts: tuple[str, int]) -> bytes:
    """("voice"|"silence", ms) parts at 8 kHz."""
    chunks = []
    for kind, ms in parts:
        n = 8 * ms
        if kind == "voice":
            t = np.arange(n) / 8000
            chunks.append(np.round(8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16))
        else:
            chunks.append(np.zeros(n, dtype=np.int16))
    return encode_wav(Pcm(8000, np.concatenate(chunks)))


HUMAN = _wav(("silence", 300), ("voice", 500), ("silence", 3000))
MACHINE = _wav(("silence", 300), ("voice", 4000), ("silence", 1000))


class Rig:
    def __init__(self, fs: FakeFreeSwitch, driver: FreeSwitchDriver) -> None:
        self.fs, self.driver = fs, driver
        self.events = driver.events()
        self.n = 0

    async def originate(
        self, audio: bytes | None, then: base.Amd | None = None, **variables: str
    ) -> str:
        self.n += 1
        number = f"6900{self.n}"
        call_id = f"11111111-2222-4333-8444-5555555500{self.n:02d}"
        if audio is not None:
            self.fs.tap_audio[number] = audio
        await self.driver.originate(
            base.OriginateRequest(
                call_id,
                base.DialTarget("trunk", "carrier", number),
                then or base.Amd(),
                variables=variables,
            )
        )
        return call_id

    async def until(
        self, call_id: str, kind: type[base.PbxEvent], within: float = 10
    ) -> list[base.PbxEvent]:
        seen: list[base.PbxEvent] = []

        async def run() -> None:
            async for ev in self.events:
                if ev.call_id == call_id:
                    seen.append(ev)
                    if isinstance(ev, kind):
                        return

        await asyncio.wait_for(run(), within)
        return seen


def free_udp_ports(n: int) -> range:
    """A run of ``n`` UDP ports nobody holds now (the machine is shared: no fixed range)."""
    for _ in range(50):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        first = probe.getsockname()[1]
        probe.close()
        held = []
        try:
            for port in range(first, first + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            return range(first, first + n)
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no run of free UDP ports found")


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with FakeFreeSwitch(time_scale=0.05) as fs:
        driver = FreeSwitchDriver(
            "fs1",
            fs.host,
            fs.port,
            fs.password,
            amd_params=AmdParams(total_analysis_time=3000),
            media_tap=MediaTap(ports=free_udp_ports(8)),
        )
        await driver.start()
        try:
            assert await driver.wait_up(5) is base.LinkState.UP
            yield Rig(fs, driver)
        finally:
            await driver.stop()


async def test_human_and_machine_on_a_pcmu_call(rig: Rig) -> None:
    human = await rig.originate(HUMAN, absolute_codec_string="PCMU")
    machine = await rig.originate(MACHINE, absolute_codec_string="PCMU")
    h = [e for e in await rig.until(human, base.AmdResult) if isinstance(e, base.AmdResult)]
    assert (h[-1].status, h[-1].cause) == ("HUMAN", "HUMAN-500-500")
    m = [e for e in await rig.until(machine, base.AmdResult) if isinstance(e, base.AmdResult)]
    assert (m[-1].status, m[-1].cause) == ("MACHINE", "LONGGREETING-1500-1500")
    # The recorded sendmsg: call-command unicast, local/remote ip and port, udp, no flags.
    sent = [c for c in rig.fs.received if c.startswith(f"sendmsg {human}")]
    assert len(sent) == 1
    headers = dict(line.split(": ", 1) for line in sent[0].split("\n")[1:])
    assert headers["call-command"] == "unicast"
    assert headers["transport"] == "udp"
    assert "flags" not in headers
    assert headers["remote-port"] == str(rig.driver.media_tap.listen_port)
    assert rig.driver.media_tap.stray == 0


async def test_each_call_is_analysed_with_its_own_parameters(rig: Rig) -> None:
    # A campaign with the fast profile beside one with the switch's parameters, at once.
    fast = base.Amd(AmdOverrides.of(FAST))
    human_fast = await rig.originate(HUMAN, fast, absolute_codec_string="PCMU")
    human = await rig.originate(HUMAN, absolute_codec_string="PCMU")
    machine_fast = await rig.originate(MACHINE, fast, absolute_codec_string="PCMU")
    shorter = base.Amd(AmdOverrides(after_greeting_silence=300))
    human_300 = await rig.originate(HUMAN, shorter, absolute_codec_string="PCMU")

    results: dict[str, tuple[str, str]] = {}

    async def collect() -> None:
        async for ev in rig.events:
            if isinstance(ev, base.AmdResult):
                results[ev.call_id] = (ev.status, ev.cause)
                if len(results) == 4:
                    return

    await asyncio.wait_for(collect(), 10)
    # app_amd's causes carry the parameter that decided: amd-fast.conf's 200 ms silence and
    # 1000 ms greeting; the driver's own 500 for the other; a single key over the driver's.
    assert results == {
        human_fast: ("HUMAN", "HUMAN-200-200"),
        human: ("HUMAN", "HUMAN-500-500"),
        machine_fast: ("MACHINE", "LONGGREETING-1000-1000"),
        human_300: ("HUMAN", "HUMAN-300-300"),
    }


async def test_a_g722_call_is_analysed_at_16_khz(rig: Rig) -> None:
    call = await rig.originate(HUMAN)
    got = [e for e in await rig.until(call, base.AmdResult) if isinstance(e, base.AmdResult)]
    assert got[-1].status == "HUMAN"
    tap = next(t for uid, t in rig.fs.taps if uid == call)
    assert tap.rate == 16000


async def test_no_audio_is_notsure_at_the_analysis_time(rig: Rig) -> None:
    call = await rig.originate(encode_wav(Pcm(8000, np.zeros(0, dtype=np.int16))))
    got = [e for e in await rig.until(call, base.AmdResult) if isinstance(e, base.AmdResult)]
    assert (got[-1].status, got[-1].cause) == ("NOTSURE", "NOAUDIODATA-0")


async def test_hangup_during_analysis_is_hangup_before_hungup(rig: Rig) -> None:
    call = await rig.originate(MACHINE)
    await rig.until(call, base.Answered)
    await rig.driver.hangup(call)
    seen = await rig.until(call, base.HungUp)
    kinds = [type(e) for e in seen]
    assert base.AmdResult in kinds and kinds.index(base.AmdResult) < kinds.index(base.HungUp)
    amd = next(e for e in seen if isinstance(e, base.AmdResult))
    assert (amd.status, amd.cause) == ("HANGUP", "")
    # The port is free again and the fake's tap stopped with the hangup.
    assert rig.driver.media_tap.stream_of(call) is None


async def test_a_transfer_stops_the_stream_and_frees_the_port(rig: Rig) -> None:
    call = await rig.originate(HUMAN, absolute_codec_string="PCMU")
    await rig.until(call, base.AmdResult)
    tap = next(t for uid, t in rig.fs.taps if uid == call)
    await rig.driver.redirect(call, base.DialplanTarget("default", "engine_park"))
    await asyncio.wait_for(tap.wait(), 2)
    assert tap.sent < len(tap.samples) // 160  # stopped before the audio ran out
    assert rig.driver.media_tap.stream_of(call) is None


async def test_only_the_switch_address_and_an_open_port_are_accepted() -> None:
    ports = free_udp_ports(2)
    tap = MediaTap(switch_ip="127.0.0.1", ports=ports)
    await tap.start()
    try:
        a = tap.open("a")
        tap.deliver(b"\x00\x00", "127.0.0.2", a.local_port)  # another host
        tap.deliver(b"\x00\x00", "127.0.0.1", 39999)  # nobody's port
        assert (a.received, tap.stray) == (0, 2)
        tap.deliver(b"\x01\x00", "127.0.0.1", a.local_port)
        assert await a.get(1) == b"\x01\x00"
        tap.release("a")
        b, c = tap.open("b"), tap.open("c")
        # A released port goes to the back of the queue: not handed out at once again.
        other = ports[1] if a.local_port == ports[0] else ports[0]
        assert (b.local_port, c.local_port) == (other, a.local_port)
    finally:
        await tap.stop()


def test_config_builds_the_tap_and_refuses_bad_values() -> None:
    from pydantic import ValidationError

    from engine.core.config import FreeSwitchSwitch
    from engine.pbx.factory import build_driver

    sw = FreeSwitchSwitch(
        kind="freeswitch",
        name="fs1",
        host="10.0.0.7",
        password="x",  # type: ignore[arg-type]
        amd_tap_bind="10.0.0.2:9100",
        amd_tap_ports="32000-32009",
    )
    driver = build_driver(sw)
    assert isinstance(driver, FreeSwitchDriver)
    tap = driver.media_tap
    assert (tap.listen_host, tap.listen_port, tap.advertise_ip) == ("10.0.0.2", 9100, "10.0.0.2")
    assert tap.switch_ip == "10.0.0.7"
    assert sorted(tap._free) == list(range(32000, 32010))  # the local-ports it will hand out
    for bad in (
        {"amd_tap_ports": "32000"},
        {"amd_tap_ports": "5-1"},
        {"amd_tap_bind": "0.0.0.0:1"},
    ):
        with pytest.raises(ValidationError):
            FreeSwitchSwitch(kind="freeswitch", name="fs1", password="x", **bad)  # type: ignore[arg-type]


async def test_a_call_that_ended_while_the_link_was_down_frees_its_port(rig: Rig) -> None:
    call = await rig.originate(MACHINE)
    await rig.until(call, base.Answered)
    assert await _tap_streaming(rig, call)
    # The link drops; the call ends behind the engine's back (no hangup event reaches it).
    rig.fs.drop_connections()
    await rig.fs.kill(call, "NORMAL_CLEARING")
    seen = await rig.until(call, base.AmdResult)
    assert rig.driver.media_tap.stream_of(call) is None
    amd = [e for e in seen if isinstance(e, base.AmdResult)]
    assert [e.status for e in amd] == ["HANGUP"]


async def _tap_streaming(rig: Rig, call: str) -> bool:
    """Wait (up to 2 s) until the fake started the call's unicast and the engine got audio."""
    for _ in range(200):
        stream = rig.driver.media_tap.stream_of(call)
        if stream is not None and stream.received > 0:
            return True
        await asyncio.sleep(0.01)
    return False


async def _restart_mid_analysis(
    rig: Rig, audio: bytes, heard_frames: int, params: AmdOverrides | None = None
) -> tuple[str, Rig]:
    """Originate an Amd() leg, let the first driver die after the answer (its analysis and
    socket go with it, FreeSWITCH's tap keeps sending), wait until the far end has played
    ``heard_frames`` 20 ms frames to nobody, and bring up a second driver (the restarted
    engine) that resumes the analysis."""
    call = await rig.originate(audio, base.Amd(params), absolute_codec_string="PCMU")
    await rig.until(call, base.Answered)
    await rig.driver.stop()
    tap = next(t for uid, t in rig.fs.taps if uid == call)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while tap.sent < heard_frames:
        assert loop.time() < deadline, tap.sent
        await asyncio.sleep(0.01)
    second = FreeSwitchDriver(
        "fs1",
        rig.fs.host,
        rig.fs.port,
        rig.fs.password,
        amd_params=AmdParams(total_analysis_time=3000),
        media_tap=MediaTap(ports=free_udp_ports(8)),
    )
    await second.start()
    assert await second.wait_up(5) is base.LinkState.UP
    again = Rig(rig.fs, second)
    # The call's own parameters come from the live-call registry (engine/calls/recovery.py).
    await second.resume_amd(call, answered=True, params=params)
    return call, again


async def test_a_restart_after_the_hello_resumes_and_hears_a_person_waiting(rig: Rig) -> None:
    # The hello (0.3-0.8 s) went to the dead engine; the resumed analysis hears the wait.
    call, again = await _restart_mid_analysis(rig, HUMAN, heard_frames=45)
    try:
        got = [e for e in await again.until(call, base.AmdResult) if isinstance(e, base.AmdResult)]
        assert (got[-1].status, got[-1].cause) == ("HUMAN", "HUMAN-500-500")
        # The old tap was ended by a transfer back into park (recorded: no datagram after
        # it), and a new one streams to the second engine's socket.
        assert f"api uuid_transfer {call} engine_park XML default" in rig.fs.received
        taps = [t for uid, t in rig.fs.taps if uid == call]
        assert len(taps) == 2
        assert taps[1].remote[1] == again.driver.media_tap.listen_port
        assert again.driver.media_tap.stray == 0
    finally:
        await again.driver.stop()


async def test_a_resumed_analysis_keeps_the_calls_own_parameters(rig: Rig) -> None:
    # A campaign's call (after_greeting_silence 300): the restarted engine decides with 300.
    params = AmdOverrides(after_greeting_silence=300)
    call, again = await _restart_mid_analysis(rig, HUMAN, heard_frames=45, params=params)
    try:
        got = [e for e in await again.until(call, base.AmdResult) if isinstance(e, base.AmdResult)]
        assert (got[-1].status, got[-1].cause) == ("HUMAN", "HUMAN-300-300")
    finally:
        await again.driver.stop()


async def test_a_restart_mid_greeting_resumes_and_hears_a_machine(rig: Rig) -> None:
    call, again = await _restart_mid_analysis(rig, MACHINE, heard_frames=30)
    try:
        got = [e for e in await again.until(call, base.AmdResult) if isinstance(e, base.AmdResult)]
        assert (got[-1].status, got[-1].cause) == ("MACHINE", "LONGGREETING-1500-1500")
        # One analysis per leg: asking again changes nothing.
        await again.driver.resume_amd(call, answered=True)
        assert len([t for uid, t in rig.fs.taps if uid == call]) == 2
    finally:
        await again.driver.stop()


async def test_a_local_port_still_held_by_an_old_tap_is_left_for_another(rig: Rig) -> None:
    # After a restart, a previous process's tap may still hold a local-port on the switch:
    # FreeSWITCH's bind fails, its sendmsg still says +OK, and no frame comes. The driver
    # moves to another port instead of waiting out the analysis for NOAUDIODATA.
    held = rig.driver.media_tap._free[0]
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", held))
    try:
        call = await rig.originate(HUMAN, absolute_codec_string="PCMU")
        got = [e for e in await rig.until(call, base.AmdResult) if isinstance(e, base.AmdResult)]
        assert (got[-1].status, got[-1].cause) == ("HUMAN", "HUMAN-500-500")
        sent = [c for c in rig.fs.received if c.startswith(f"sendmsg {call}")]
        ports = [dict(ln.split(": ", 1) for ln in c.split("\n")[1:])["local-port"] for c in sent]
        assert ports[0] == str(held) and len(ports) == 2 and ports[1] != str(held)
    finally:
        squatter.close()
