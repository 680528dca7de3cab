"""IVR flows on the real Asterisk 22 sandbox: menu by DTMF, webhook + condition,
transfer (dialplan target and number through a trunk group), split, record.

The far end is the sandbox carrier's listening caller (telephony-config/asterisk/
carrier-test.conf): 05<keys> waits for the engine's prompt to start and end, then
presses the keys; 06<keys> presses one key after each prompt. The engine calls it
with `then: ivr`, so the flow runs on the engine's leg over FastAGI and the prompts
the far end waits for are the flow's own espeak-ng prompts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from engine.app import Engine
from engine.ivr.webhook import verify
from engine.speech.wav import Pcm, decode_wav, encode_wav
from engine.store.pg.pool import PgStore
from tests.harness import (
    TOKEN,
    Client,
    engine_config,
    event_log,
    running_engine,
    stored_cdrs,
    wait_for,
)
from tests.integration import sandbox
from tests.speech_audio import HAVE_TOOLS, spoken_wav

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]

SANDBOX_DIR = Path(
    os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22")
)
TTS_DIR = SANDBOX_DIR / "root" / "usr" / "share" / "asterisk" / "sounds" / "engine-tts"
SECRET = "live-test-secret"
RECORDINGS = "/var/spool/asterisk/monitor"  # exists in the sandbox, writable by Asterisk
#: The record step's messages become recordings (docs/recordings.md "Voicemail"): the engine
#: reads the chroot's directory from outside, as for call recordings.
VOICEMAIL_MAPPING = f"""
[recordings]
store_dir = "{{store}}"
[recordings.switches.asterisk-1]
switch_dir = "{RECORDINGS}"
engine_dir = "{SANDBOX_DIR / "root" / RECORDINGS.lstrip("/")}"
"""

MENU = """\
name: live-menu
steps:
  - answer
  - id: menu
    menu:
      say: "For sales press 1. For support press 2."
      options:
        - {dtmf: "1", goto: sales}
        - {dtmf: "2", goto: support}
      retries: 1
      timeout_s: 6
      invalid_say: "That is not an option."
      into: choice
      on_invalid: bad
      on_timeout: bad
  - id: sales
    say: "Sales."
  - hangup
  - id: support
    say: "Support."
  - hangup
  - id: bad
    say: "Goodbye."
  - hangup
"""

WEBHOOK = """\
name: live-webhook
variables: {{tier: "", balance: 0}}
steps:
  - answer
  - id: ask
    gather:
      say: "Enter your account number."
      into: account
      max_digits: 4
      timeout_s: 6
      on_timeout: vip_check
  - id: crm
    webhook:
      url: "http://127.0.0.1:{port}/crm/{{account}}"
      method: POST
      body: {{account: "{{account}}"}}
      map: {{tier: customer.tier, balance: customer.balance}}
      timeout_s: 2
      on_error: normal
  - id: vip_check
    if: tier == "gold" and balance > 100
    then: vip
    else: normal
  - id: vip
    say: "Welcome, gold customer."
  - hangup
  - id: normal
    say: "Welcome."
  - hangup
"""

TRANSFER = """\
name: live-transfer
steps:
  - answer
  - id: menu
    menu:
      say: "Press 1 for the operator, 2 for an agent."
      options:
        - {dtmf: "1", goto: operator}
        - {dtmf: "2", goto: agent}
      timeout_s: 6
  - hangup
  - id: operator
    transfer: {dialplan: {context: customers, exten: s}, on_error: failed}
  - id: agent
    transfer: {number: "1001", trunk_group: xfer, timeout_s: 10, on_error: failed}
  - id: failed
    say: "Sorry."
  - hangup
"""

SPLIT_RECORD = """\
name: live-split
steps:
  - answer
  - split:
      name: greeting
      variants:
        short: {share: 50, goto: short}
        long: {share: 50, goto: long}
  - id: short
    say: "Hello."
  - goto: message
  - id: long
    say: "Hello and welcome."
  - id: message
    say: "Leave a message after the tone."
  - id: record
    record: {into: message, max_s: 3, beep: true, on_error: failed}
  - hangup
  - id: failed
    hangup:
"""

SPEECH = """\
name: live-speech
steps:
  - answer
  - id: menu
    menu:
      say: "Welcome to the speech test line. Please say billing, or operator, now."
      options:
        - {dtmf: "1", speech: [billing], goto: billing}
        - {dtmf: "2", speech: [operator], goto: operator}
      asr: pocketsphinx
      retries: 0
      timeout_s: 8
      on_invalid: bad
      on_timeout: bad
  - id: billing
    say: "Billing."
  - hangup
  - id: operator
    say: "Operator."
  - hangup
  - id: bad
    say: "Goodbye."
  - hangup
"""
VOICEMAIL = """\
name: live-voicemail
steps:
  - answer
  - id: record
    record: {into: message, max_s: 30, silence_s: 10, on_error: failed}
  - say: "Thank you."
  - hangup
  - id: failed
    hangup:
"""
#: A caller reviews the message: played back from its `into` path; the CRM then hears of it
#: (the test's sign that the playback is over), and the line is held (a gather looping on its
#: timeout) until the test hangs up.
REVIEW = """\
name: live-review
steps:
  - answer
  - record: {{into: message, max_s: 3, beep: true, on_error: failed}}
  - play: "{{message}}"
  - webhook:
      url: "http://127.0.0.1:{port}/crm/review"
      method: POST
      body: {{account: "review"}}
      timeout_s: 2
      on_error: hold
  - id: hold
    gather: {{prompt: beep, into: key, max_digits: 1, timeout_s: 20, on_timeout: hold}}
  - hangup
  - id: failed
    hangup:
"""
# 76NNN plays asr-corpus/NNN (carrier-test.conf); 980-989 are the IVR tests' own files,
# outside the corpus ids (1NN, 2NN) and test_asr_asterisk's (990-999).
ASR_SOUNDS = SANDBOX_DIR / "root/usr/share/asterisk/sounds/en_US_f_Allison/asr-corpus"

XFER_GROUP = """
[[trunk_groups]]
name = "xfer"
members = ["self-trunk"]
"""


class Crm:
    """The CRM the webhook step calls: checks the signature, answers by account."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(SECRET, request.headers, request.method, str(request.url), body)
        self.seen.append((request.path, ok, json.loads(body)))
        if not ok:
            return web.json_response({"error": "bad signature"}, status=401)
        account = request.match_info["account"]
        tier = "gold" if account == "4242" else "silver"
        return web.json_response({"customer": {"tier": tier, "balance": 150.5}})


@pytest.fixture(scope="module")
async def live(
    pg_dsn: str, redis_url: str, store_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Engine, Client, Crm]]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    crm = Crm()
    app = web.Application()
    app.router.add_post("/crm/{account}", crm.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    flows = tmp_path_factory.mktemp("ivr")
    (flows / "live-menu.yaml").write_text(MENU)
    (flows / "live-webhook.yaml").write_text(WEBHOOK.format(port=port))
    (flows / "live-transfer.yaml").write_text(TRANSFER)
    (flows / "live-split.yaml").write_text(SPLIT_RECORD)
    (flows / "live-speech.yaml").write_text(SPEECH)
    (flows / "live-voicemail.yaml").write_text(VOICEMAIL)
    (flows / "live-review.yaml").write_text(REVIEW.format(port=port))
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"ivrlive:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / "engine-ivr-live",
        ivr_dir=flows,
        extra=XFER_GROUP
        + VOICEMAIL_MAPPING.format(store=store_data_dir / "engine-ivr-live-recordings"),
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ENGINE_TTS_DIR", str(TTS_DIR))
            mp.setenv("ENGINE_TTS_PREFIX", "engine-tts")
            mp.setenv("ENGINE_IVR_WEBHOOK_SECRET", SECRET)
            mp.setenv("ENGINE_IVR_RECORDINGS_DIR", RECORDINGS)
            async with running_engine(cfg) as (engine, client):
                assert engine.ivr is not None and engine.ivr.errors == []
                yield engine, client, crm
    finally:
        await runner.cleanup()


def ivr_events(log: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in log
        if m.get("event", {}).get("call_id") == call_id
        and str(m["event"].get("type", "")).startswith("Ivr")
    ]


async def run_call(client: Client, to: str, flow: str) -> tuple[str, list[dict[str, Any]]]:
    """Place a call to the listening caller ``to`` running ``flow``; its IVR events."""
    async with event_log(client) as log:
        call = await client.originate(to, then={"kind": "ivr", "flow": flow}, timeout_s=10)
        call_id = call["call_id"]
        await wait_for(
            lambda: any(
                e["type"] in ("IvrFinished", "IvrFailed") for e in ivr_events(log, call_id)
            ),
            timeout_s=60,
            what=f"the end of {flow}",
        )
        await client.wait_state(call_id, "ended", timeout_s=40)
    return call_id, ivr_events(log, call_id)


async def voicemail_message(client: Client, call_id: str) -> tuple[dict[str, Any], bytes]:
    """The call's voicemail message in the recordings API once ready, and its audio."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        status, body, _ = await client.request(
            "GET", "/recordings", params={"kind": "voicemail", "call_id": call_id}
        )
        assert status == 200, body
        rows = body["recordings"]
        if rows and rows[0]["state"] == "ready":
            break
        assert loop.time() < deadline, f"no ready voicemail message for {call_id}: {rows}"
        await asyncio.sleep(0.1)  # polling the API for a condition
    (row,) = rows
    async with client.http.get(
        f"{client.base}/recordings/{row['recording_id']}/audio",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        assert r.status == 200
        return row, await r.read()


def finished(events: list[dict[str, Any]]) -> dict[str, Any]:
    (done,) = [e for e in events if e["type"] in ("IvrFinished", "IvrFailed")]
    return done


def steps(done: dict[str, Any]) -> list[str]:
    return [p.split(":", 1)[1] for p in done.get("path", [])]


async def test_menu_chosen_by_the_far_ends_keys(live: tuple[Engine, Client, Crm]) -> None:
    _, client, _ = live
    _, events = await run_call(client, "052", "live-menu")
    done = finished(events)
    assert done["reason"] == "completed", done
    assert steps(done) == ["answer@0", "menu", "support", "hangup@5"]
    inputs = [(e["digits"], e["outcome"]) for e in events if e["type"] == "IvrInput"]
    assert inputs == [("2", "ok")]


async def test_menu_retry_after_an_invalid_key(live: tuple[Engine, Client, Crm]) -> None:
    _, client, _ = live
    _, events = await run_call(client, "0691", "live-menu")
    done = finished(events)
    assert steps(done) == ["answer@0", "menu", "sales", "hangup@3"], done
    inputs = [(e["digits"], e["outcome"]) for e in events if e["type"] == "IvrInput"]
    assert inputs == [("9", "invalid"), ("1", "ok")]


@pytest.mark.parametrize(("account", "branch"), [("4242", "vip"), ("1111", "normal")])
async def test_webhook_sets_variables_and_a_condition_branches_on_them(
    live: tuple[Engine, Client, Crm], account: str, branch: str
) -> None:
    _, client, crm = live
    before = len(crm.seen)
    _, events = await run_call(client, f"05{account}", "live-webhook")
    done = finished(events)
    assert steps(done)[1:4] == ["ask", "crm", "vip_check"], done
    assert steps(done)[4] == branch
    path, signed, body = crm.seen[before]
    assert (path, signed, body["account"]) == (f"/crm/{account}", True, account)
    (hook,) = [e for e in events if e["type"] == "IvrWebhook"]
    assert hook["ok"] is True


async def test_transfer_to_a_dialplan_target(live: tuple[Engine, Client, Crm]) -> None:
    _, client, _ = live
    call_id, events = await run_call(client, "051", "live-transfer")
    done = finished(events)
    assert (done["reason"], done["target"]) == ("transferred", "dialplan:customers,s,1"), done
    status, call, _ = await client.request("GET", f"/calls/{call_id}")
    assert status == 200 and call["then"]["kind"] == "dialplan", call


async def test_transfer_to_a_number_through_a_trunk_group(
    live: tuple[Engine, Client, Crm],
) -> None:
    _, client, _ = live
    async with event_log(client) as log:
        call = await client.originate("052", then={"kind": "ivr", "flow": "live-transfer"})
        call_id = call["call_id"]
        await wait_for(
            lambda: (
                any(
                    m.get("event", {}).get("type") == "Bridged"
                    and m["event"].get("call_id") == call_id
                    for m in log
                )
                or any(e["type"] == "IvrFailed" for e in ivr_events(log, call_id))
            ),
            timeout_s=60,
            what="the caller bridged to the transfer target",
        )
        events = ivr_events(log, call_id)
        await client.wait_state(call_id, "ended", timeout_s=40)
    done = finished(events)
    assert (done["reason"], done["target"]) == ("transferred", "number:1001@xfer"), done


async def test_split_variant_is_in_the_cdr_and_record_writes_a_file(
    live: tuple[Engine, Client, Crm], pg_store: PgStore
) -> None:
    _, client, _ = live
    # 7XXX says "hello" and plays silence for 10 s: it sends audio all along, so the
    # recording has frames (the 05/06 callers Wait(), which sends no RTP at all).
    call_id, events = await run_call(client, "7001", "live-split")
    done = finished(events)
    (split,) = [e for e in events if e["type"] == "IvrSplit"]
    assert split["variant"] in ("short", "long")
    assert split["variant"] in steps(done), done
    (rows,) = await stored_cdrs(pg_store.pool, call_id)
    assert rows.variables.get("ivr_split.greeting") == split["variant"]
    (recorded,) = [e for e in events if e["type"] == "IvrRecorded"]
    assert recorded["path"].startswith(RECORDINGS + "/ivr-")
    # The message is a recording: listed, its audio more than a WAV header, no plaintext left.
    row, audio = await voicemail_message(client, call_id)
    assert (row["recording_id"], row["flow"]) == (recorded["recording_id"], "live-split")
    assert len(audio) > 44 and audio[:4] == b"RIFF"
    on_disk = SANDBOX_DIR / "root" / recorded["path"].lstrip("/")
    await wait_for(lambda: not on_disk.exists(), what="the plaintext removed")


async def test_the_flow_plays_back_its_message_and_the_plaintext_goes_with_the_call(
    live: tuple[Engine, Client, Crm],
) -> None:
    """``record into: message`` then ``play: "{message}"``: the message is sealed and listed
    at once, its plaintext stays for the flow while the call lives (Asterisk's STREAM FILE
    plays it to the end: a missing file fails the step, and the flow would not go on to the
    webhook), and the call's end removes it."""
    _, client, crm = live
    async with event_log(client) as log:
        # 7XXX says "hello" and plays silence for 10 s (audio all along: a real take).
        call = await client.originate("7001", then={"kind": "ivr", "flow": "live-review"})
        call_id = call["call_id"]
        await wait_for(
            lambda: any(e["type"] == "IvrRecorded" for e in ivr_events(log, call_id)),
            timeout_s=30,
            what="the message",
        )
        (recorded,) = [e for e in ivr_events(log, call_id) if e["type"] == "IvrRecorded"]
        row, audio = await voicemail_message(client, call_id)  # sealed, listed, readable
        assert (row["recording_id"], row["flow"]) == (recorded["recording_id"], "live-review")
        assert len(audio) > 44 and audio[:4] == b"RIFF"
        on_disk = SANDBOX_DIR / "root" / recorded["path"].lstrip("/")
        await wait_for(
            lambda: any(path == "/crm/review" for path, _, _ in crm.seen),
            timeout_s=20,
            what="the playback over (the webhook after it)",
        )
        status, body, _ = await client.request("GET", f"/calls/{call_id}")
        assert status == 200 and body["state"] != "ended", body
        assert await asyncio.to_thread(on_disk.exists)  # kept for the flow
        status, body, _ = await client.request("DELETE", f"/calls/{call_id}")
        assert status in (200, 202), body
        await wait_for(
            lambda: any(
                e["type"] in ("IvrFinished", "IvrFailed") for e in ivr_events(log, call_id)
            ),
            timeout_s=30,
            what="the end of live-review",
        )
        done = finished(ivr_events(log, call_id))
    assert done["reason"] == "caller hung up", done
    assert steps(done)[:5] == ["answer@0", "record@1", "play@2", "webhook@3", "hold"], done
    await wait_for(lambda: not on_disk.exists(), what="the plaintext removed at the call's end")


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
async def test_menu_chosen_by_speech_played_by_the_far_end(
    live: tuple[Engine, Client, Crm],
) -> None:
    """The far end (76980) says "operator" 2.5 s after answering, while the engine's
    4 s prompt plays over the AudioSocket: the speech stops the prompt (barge-in), the
    pocketsphinx worker recognises the keyword, and the flow takes its branch."""
    _, client, _ = live
    ASR_SOUNDS.mkdir(parents=True, exist_ok=True)
    pcm = decode_wav(spoken_wav("operator", lead_ms=2500))
    tail = np.random.default_rng(3).normal(0, 30, 8000 * 4).astype(np.int16)
    padded = Pcm(pcm.rate, np.concatenate([pcm.samples, tail]))  # stay on the line
    (ASR_SOUNDS / "980.wav").write_bytes(encode_wav(padded))
    _, events = await run_call(client, "76980", "live-speech")
    done = finished(events)
    # "completed" after the branch's own say: the AGI session went on once the engine
    # ended the AudioSocket application.
    assert (done["reason"], steps(done)) == (
        "completed",
        ["answer@0", "menu", "operator", "hangup@5"],
    ), done
    (heard,) = [e for e in events if e["type"] == "IvrInput"]
    assert (heard["text"], heard["outcome"], heard["barged_in"]) == ("operator", "ok", True)
    assert heard["confidence"] >= 0.5


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
async def test_voicemail_kept_when_the_caller_hangs_up_during_the_take(
    live: tuple[Engine, Client, Crm],
) -> None:
    """The usual end of a voicemail: the caller (76981) speaks and hangs up, long before
    the take's 10 s of silence or 30 s limit. Asterisk answers RECORD FILE with
    ``200 result=-1 (hangup) endpos=<n>`` and keeps the file; the step still reports the
    message (IvrRecorded, ``ended_by: hangup``) and the flow ends as a hang-up."""
    _, client, _ = live
    ASR_SOUNDS.mkdir(parents=True, exist_ok=True)
    pcm = decode_wav(spoken_wav("please call me back about my order", lead_ms=1500))
    tail = np.random.default_rng(5).normal(0, 30, 8000 * 2).astype(np.int16)
    # About 6 s of audio from the answer (speech from 1.5 s), then the dialplan hangs up.
    (ASR_SOUNDS / "981.wav").write_bytes(
        encode_wav(Pcm(pcm.rate, np.concatenate([pcm.samples, tail])))
    )
    call_id, events = await run_call(client, "76981", "live-voicemail")
    done = finished(events)
    assert done["reason"] == "caller hung up", done
    assert steps(done)[-1] == "record", done
    (recorded,) = [e for e in events if e["type"] == "IvrRecorded"]
    assert recorded["ended_by"] == "hangup", recorded
    assert recorded["path"].startswith(RECORDINGS + "/ivr-")
    # Kept as a recording (docs/recordings.md "Voicemail"): listed with how it ended, its
    # audio decrypted through the API; the switch's plaintext is gone.
    row, audio = await voicemail_message(client, call_id)
    assert (row["recording_id"], row["kind"]) == (recorded["recording_id"], "voicemail")
    assert (row["flow"], row["ended_by"], row["queue"]) == ("live-voicemail", "hangup", None)
    kept = decode_wav(audio)
    on_disk = SANDBOX_DIR / "root" / recorded["path"].lstrip("/")
    await wait_for(lambda: not on_disk.exists(), what="the plaintext removed")
    # The caller's words are in the file, and its length is what Asterisk reported.
    assert int(np.abs(kept.samples.astype(np.int32)).max()) > 1000
    assert recorded["duration_ms"] == len(kept.samples) * 1000 // kept.rate, recorded
