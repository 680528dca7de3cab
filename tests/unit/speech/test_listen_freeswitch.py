"""Speech input on FreeSWITCH through the fake ESL peer: the driver's unicast tap (the one
AMD uses, streaming like unicast-*.esl) feeds listen(), and a spoken menu keyword is
recognised by the pocketsphinx plugin in its worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.pbx import base
from engine.pbx.freeswitch.driver import FreeSwitchDriver
from engine.pbx.freeswitch.media_tap import MediaTap
from engine.speech.asr.base import SpeechStatus
from engine.speech.listen import Pools, listen
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.speech_audio import HAVE_TOOLS, spoken_wav
from tests.unit.test_freeswitch_amd import free_udp_ports

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")

MENU = ["billing", "operator", "cancel", "repair", "payment"]


@pytest.fixture
async def driver() -> AsyncIterator[tuple[FakeFreeSwitch, FreeSwitchDriver]]:
    async with FakeFreeSwitch(time_scale=0.05) as fs:
        drv = FreeSwitchDriver(
            "fs1", fs.host, fs.port, fs.password, media_tap=MediaTap(ports=free_udp_ports(4))
        )
        await drv.start()
        try:
            assert await drv.wait_up(5) is base.LinkState.UP
            yield fs, drv
        finally:
            await drv.stop()


async def _answered(drv: FreeSwitchDriver, call_id: str, number: str) -> None:
    events = drv.events()
    await drv.originate(
        base.OriginateRequest(
            call_id,
            base.DialTarget("trunk", "carrier", number),
            base.Park(),
            variables={"absolute_codec_string": "PCMU"},
        )
    )
    async for ev in events:
        if ev.call_id == call_id and isinstance(ev, base.Answered):
            return


@pytest.mark.parametrize("rate_var", ["PCMU", ""])
async def test_a_spoken_keyword_through_the_unicast_tap(
    driver: tuple[FakeFreeSwitch, FreeSwitchDriver], rate_var: str
) -> None:
    fs, drv = driver
    number = "69071" if rate_var else "69072"
    call_id = f"11111111-2222-4333-8444-55555555710{len(rate_var)}"
    fs.tap_audio[number] = spoken_wav("i want operator")
    events = drv.events()
    await drv.originate(
        base.OriginateRequest(
            call_id,
            base.DialTarget("trunk", "carrier", number),
            base.Park(),
            variables={"absolute_codec_string": rate_var} if rate_var else {},
        )
    )
    async for ev in events:
        if ev.call_id == call_id and isinstance(ev, base.Answered):
            break
    tap = await drv.open_audio_tap(call_id)
    # PCMU: 8 kHz L16; a default (G722) call: 16 kHz, as recorded.
    assert tap.rate == (8000 if rate_var else 16000)
    pools = Pools(size=1)
    try:
        result = await listen(tap, pools=pools, plugin="pocketsphinx", keywords=MENU)
    finally:
        await pools.stop()
    assert result.status is SpeechStatus.OK, result
    assert result.keyword == "operator"
    assert result.latency_s is not None and result.latency_s > 0
    sent = [c for c in fs.received if c.startswith(f"sendmsg {call_id}")]
    assert len(sent) == 1 and "call-command: unicast" in sent[0]
    # The hangup frees the tap's port, as for AMD.
    await drv.hangup(call_id)
    async for ev in events:
        if ev.call_id == call_id and isinstance(ev, base.HungUp):
            break
    assert call_id not in drv.media_tap.open_calls()


async def test_silence_is_no_input_and_an_unknown_plugin_is_an_error(
    driver: tuple[FakeFreeSwitch, FreeSwitchDriver],
) -> None:
    fs, drv = driver
    call_id = "11111111-2222-4333-8444-555555557300"
    fs.tap_audio["69073"] = _silence_wav()
    await _answered(drv, call_id, "69073")
    tap = await drv.open_audio_tap(call_id)
    pools = Pools(size=1)
    try:
        r = await listen(tap, pools=pools, plugin="pocketsphinx", keywords=MENU, no_input_s=1.0)
        assert r.status is SpeechStatus.NO_INPUT
        bad = await listen(tap, pools=pools, plugin="whisper", no_input_s=1.0)
        assert bad.status is SpeechStatus.ERROR and "whisper" in bad.detail
    finally:
        await pools.stop()


def _silence_wav() -> bytes:
    import numpy as np

    from engine.speech.wav import Pcm, encode_wav

    return encode_wav(Pcm(8000, np.zeros(8000 * 3, dtype=np.int16)))
