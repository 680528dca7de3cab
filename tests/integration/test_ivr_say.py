"""The IVR `say` step on the real Asterisk 22 sandbox.

The engine renders a Mandarin prompt (espeak-ng, voice cmn-latn-pinyin) into the
chroot's sounds directory when the flow loads; a call to 5001 (the far end answers,
sends DTMF and hangs up about 4 s later) runs answer / say / hangup over FastAGI.
Success is checked where a missing or unreadable file would show: the flow only
emits IvrFinished "completed" when every STREAM FILE returned without error (a
missing prompt on a live channel raises ActionFailed), and Asterisk's own log must
show it opened our file as .wav. A negative control plays a missing name and must
not complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg
from engine.speech.wav import decode_wav
from tests.harness import TEST_IVR_DIR, Client, engine_config, event_log, running_engine, wait_for
from tests.integration import sandbox

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]

SANDBOX_DIR = Path(
    os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22")
)
# The sandbox's asterisk.conf sets astdatadir = /usr/share/asterisk (Debian), so its sounds
# directory is /usr/share/asterisk/sounds inside the chroot, and a relative prompt name
# "engine-tts/<hash>" resolves to <chroot>/usr/share/asterisk/sounds/engine-tts/<hash>.wav.
TTS_DIR = SANDBOX_DIR / "root" / "usr" / "share" / "asterisk" / "sounds" / "engine-tts"
PREFIX = "engine-tts"
PINYIN = "ni3 hao3, huan1 ying2 zhi4 dian4"
VOICE = "cmn-latn-pinyin"


def expected_prompt() -> Path:
    return PromptCache(EspeakNg(), TTS_DIR, PREFIX).path_for(PINYIN, VOICE)


@pytest.fixture(scope="module")
async def live(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> AsyncIterator[tuple[Engine, Client]]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    # Remove a file left by an earlier run, so this run proves the load rendered it.
    expected_prompt().unlink(missing_ok=True)
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"say:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / "engine-say",
        ivr_dir=TEST_IVR_DIR / "tts",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENGINE_TTS_DIR", str(TTS_DIR))
        mp.setenv("ENGINE_TTS_PREFIX", PREFIX)
        async with running_engine(cfg) as pair:
            yield pair


def ivr_events(log: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in log
        if m.get("event", {}).get("call_id") == call_id
        and str(m["event"].get("type", "")).startswith("Ivr")
    ]


def console_log_size() -> int:
    return (SANDBOX_DIR / "asterisk.log").stat().st_size


def console_log_since(offset: int) -> str:
    with (SANDBOX_DIR / "asterisk.log").open("rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


async def test_mandarin_say_plays_on_asterisk(live: tuple[Engine, Client]) -> None:
    _, client = live
    prompt = expected_prompt()
    # Rendered when the flow loaded, before any call, in the format Asterisk plays natively.
    assert prompt.is_file(), f"{prompt} was not pre-rendered at load"
    pcm = decode_wav(prompt.read_bytes())
    assert pcm.rate == 8000 and 0.8 < pcm.duration_s < 3.5

    offset = console_log_size()
    async with event_log(client) as log:
        call = await client.originate("5001", then={"kind": "ivr", "flow": "say-mandarin"})
        call_id = call["call_id"]
        await wait_for(
            lambda: any(e["type"] == "IvrFinished" for e in ivr_events(log, call_id)),
            timeout_s=25,
            what="IvrFinished",
        )
        await client.wait_state(call_id, "ended", timeout_s=30)
    finished = [e for e in ivr_events(log, call_id) if e["type"] == "IvrFinished"]
    assert finished[0]["flow"] == "say-mandarin"
    assert finished[0]["reason"] == "completed", finished
    # Asterisk found our file under its sounds dir and opened it. res_agi logs the stream's
    # format name, not the file extension (Asterisk 22.10, seen in the sandbox):
    #   <PJSIP/self-trunk-0000002a> Playing 'engine-tts/8b3b...80.slin' (escape_digits=) ...
    # "slin" is 8 kHz signed linear: the format format_wav reads from an 8 kHz .wav.
    played = f"Playing '{PREFIX}/{prompt.stem}.slin'"
    await wait_for(lambda: played in console_log_since(offset), timeout_s=5, what=played)


async def test_missing_prompt_does_not_complete(live: tuple[Engine, Client]) -> None:
    # The negative control for the assertion above.
    _, client = live
    offset = console_log_size()
    async with event_log(client) as log:
        call = await client.originate("5001", then={"kind": "ivr", "flow": "play-missing"})
        call_id = call["call_id"]
        await wait_for(
            lambda: any(e["type"] == "IvrStarted" for e in ivr_events(log, call_id)),
            timeout_s=20,
            what="IvrStarted",
        )
        await client.wait_state(call_id, "ended", timeout_s=30)
    assert not any(
        e["type"] == "IvrFinished" and e.get("reason") == "completed"
        for e in ivr_events(log, call_id)
    )
    missing = "File engine-tts/missing-prompt-0000 does not exist in any format"
    await wait_for(lambda: missing in console_log_since(offset), timeout_s=5, what=missing)
