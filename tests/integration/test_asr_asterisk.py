"""Speech input on the real Asterisk 22 sandbox: the carrier's 76NNN number answers and plays
a spoken menu choice (espeak-ng); the engine's leg runs ``AudioSocket`` (app_audiosocket,
loaded by the sandbox's Debian build) to the engine's AudioSocket server, and listen()
recognises the keyword with pocketsphinx in its worker process.

Run under the sandbox lock: flock -o /tmp/asterisk-sandbox.lock pytest tests/integration/...
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from engine.pbx.asterisk.audiosocket import AudioSocketServer
from engine.pbx.asterisk.driver import AsteriskDriver
from engine.speech.asr.base import SpeechStatus
from engine.speech.listen import Pools, listen
from tests.integration import sandbox
from tests.speech_audio import HAVE_TOOLS, spoken_wav

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)"),
]

SANDBOX_DIR = Path(
    os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22")
)
# 76NNN plays asr-corpus/NNN; sounds/en links to en_US_f_Allison in the chroot. 990-999 are
# outside the corpus's ids (1NN, 2NN), so the test's own files never clash with it.
SOUNDS = SANDBOX_DIR / "root/usr/share/asterisk/sounds/en_US_f_Allison/asr-corpus"
MENU = ["billing", "operator", "cancel", "repair", "payment"]


async def _call(file_id: str, keywords: list[str] | None) -> tuple[object, int]:
    driver = AsteriskDriver(
        name="sandbox",
        host=sandbox.AMI_HOST,
        port=sandbox.AMI_PORT,
        username=sandbox.AMI_USER,
        secret=sandbox.AMI_SECRET,
        action_timeout_s=5.0,
    )
    async with AudioSocketServer() as server:
        await driver.start()
        try:
            await driver.wait_up(15)
            stream = server.expect(str(uuid.uuid4()))
            await driver.client.send_action(
                "Originate",
                [
                    ("Channel", f"PJSIP/76{file_id}@self-trunk"),
                    ("Application", "AudioSocket"),
                    ("Data", server.application_data(stream)),
                    ("Timeout", "10000"),
                    ("Async", "true"),
                ],
                timeout_s=5,
            )
            await stream.wait_connected(15)
            pools = Pools(size=1)
            try:
                result = await listen(
                    stream, pools=pools, plugin="pocketsphinx", keywords=keywords, no_input_s=5
                )
            finally:
                await pools.stop()
                await stream.hangup()
            return result, stream.received
        finally:
            await driver.stop()


async def test_a_spoken_menu_keyword_is_recognised_through_audiosocket() -> None:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    SOUNDS.mkdir(parents=True, exist_ok=True)
    (SOUNDS / "990.wav").write_bytes(spoken_wav("give me operator"))
    result, frames = await _call("990", MENU)
    assert frames > 50  # the caller's audio came over the socket as 20 ms slin frames
    assert result.status is SpeechStatus.OK, result  # type: ignore[attr-defined]
    assert result.keyword == "operator"  # type: ignore[attr-defined]
