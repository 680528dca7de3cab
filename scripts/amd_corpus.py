"""Build the labelled AMD corpus: short human hellos and long machine greetings.

    python scripts/amd_corpus.py [--out var/amd-corpus]

Writes ``ID.wav`` (ID ``00``-``95``, ``100``-``147`` and ``200``-``247``; 8 kHz, mono,
16-bit: what Asterisk's format_wav plays) and ``labels.json`` (``[{"id": "07", "label":
"human", "split": "tuning", ...}]``).
Deterministic: the texts, voices, speeds, pauses and the noise (numpy, fixed seed) are fixed
here, so the same espeak-ng and sox give the same files. Needs ``espeak-ng`` and ``sox``
(scripts/host-deps).

Four sets, 48 greetings each (24 pairs of one human and one machine):

- ``v1`` (``00``-``47``): the first corpus. Its held-out half (odd NN) was reported on and its
  figures studied (docs/amd.md, "History"), so it can no longer be called held out: all 48 are
  now the tuning set (look at them while choosing parameters).
- ``v2`` (``48``-``95``): new texts, new voices, new speeds/lead-ins/noise and its own noise
  seed, drawn from the same kind of ranges as v1 (humans: a short hello of one to four words
  after 0.2-0.9 s; machines: a 14-18 word greeting after 0.1-1.1 s). It was the held-out set
  for one bench run of the unchanged parameters (docs/amd.md); then, to change parameters, it
  joined the tuning set and v3 was made first.
- ``v3`` (``100``-``147``, dialled as 77100-77147): made like v2 with again new texts, voices
  and seed, before any parameter was changed; the held-out set of rounds 2 and 3 (run only to
  report, but its figures and its people's speech lengths were studied), tuning since round 4.
- ``v4`` (``200``-``247``, dialled as 77200-77247): the held-out set from round 4 on, made
  like v3 (new texts, voices, speeds, lead-ins, noise and seed) before any change of round 4;
  run only to report.

Every file is played in full by the sandbox carrier's 77ID numbers (7700-7795,
77100-77147, 77200-77247), silences included: they are real audio frames (samples of zero
or low noise), never a pause without RTP, which AMD could not time (carrier-test.conf).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.speech.wav import Pcm, encode_wav
from scripts.corpus_audio import mix, speak_text

RATE = 8000
PEAK = 14000  # speech peak after normalising: about -7 dBFS

HUMAN_TEXTS = [
    "Hello?",
    "Yes, hello?",
    "Hi, this is Anna.",
    "Hello.",
    "Yeah?",
    "Hello, Mark speaking.",
    "Hi there.",
    "Good morning.",
]
MACHINE_TEXTS = [
    "Hi, you have reached Anna. I cannot take your call right now, please leave a message.",
    "Hello, this is the voicemail of John Smith. Please leave your name and number after the tone.",
    "You have reached the office of Doctor Brown. We are closed. Please call again tomorrow.",
    "The person you are calling is not available. Please record your message after the tone.",
    "Hi, it's Mike. Leave a message and I will get back to you as soon as I can.",
    "Thank you for calling. Nobody is available to take your call. Please leave a short message.",
    "Hello, you've reached the Garcia family. We are not home right now, leave a message.",
    "This is Sarah. Sorry I missed you. Leave your number and I will call you back today.",
]
VOICES = [
    "en-us",
    "en-gb",
    "en-us+f3",
    "en-gb-scotland",
    "en-029+f2",
    "en-us-nyc",
    "en-gb-x-rp+f4",
    "en+m3",
]
SPEEDS = [140, 155, 170, 185, 160, 175]

# The v2 (held-out) set: nothing shared with v1's texts or voices.
HUMAN_TEXTS_V2 = [
    "Hi?",
    "Hello, who is this?",
    "Yes?",
    "Hey, hello?",
    "Speaking.",
    "Hello, this is Tom.",
    "Good afternoon.",
    "Hello, David here.",
]
MACHINE_TEXTS_V2 = [
    "Hey, it's Chris. I can't pick up right now, so leave a message and I'll call back.",
    "You've reached Lisa and Paul. "
    "We're away from the phone, please leave a message after the beep.",
    "Thanks for calling Green Valley Dental. "
    "Our office is closed. Please call back during office hours.",
    "Hi. This is Emma. I'm not around at the moment. Leave your details and I'll return your call.",
    "Your call has been forwarded to an automated voice messaging system. "
    "The number is not available.",
    "Hello. You have reached Peter Jones. Please leave a brief message and your phone number.",
    "Hi, sorry we missed your call. Leave us a message and we will ring you back soon.",
    "Good day, you have reached the sales department. "
    "All our staff are busy, please leave a message.",
]
VOICES_V2 = [
    "en-gb-x-gbclan",
    "en-us+m5",
    "en-gb+f5",
    "en-029+m2",
    "en-us-nyc+f1",
    "en-gb-x-gbcwmd",
    "en-gb-scotland+f3",
    "en-us+klatt4",
]
SPEEDS_V2 = [150, 180, 145, 165, 175, 160]

# The v3 (held-out) set: nothing shared with v1's or v2's texts or voices.
HUMAN_TEXTS_V3 = [
    "Hello there?",
    "Yes, speaking.",
    "Hi.",
    "Hello, it's Jane.",
    "Who's calling?",
    "Morning.",
    "Yep, hello?",
    "Hello, Sam here.",
]
MACHINE_TEXTS_V3 = [
    "Hi, you've got Rachel. I'm on the other line, leave a message and I'll ring back.",
    "Welcome to the voice mailbox of extension two four one. Please leave a message now.",
    "Hello, this is Bob's phone. I can't answer right now, so please leave me a message.",
    "Sorry, nobody can come to the phone right now. Leave your name and we'll call you.",
    "You are through to Harris and Sons. Our lines are closed, please leave a message.",
    "Hey there, it's Kate. I'm busy at the moment, leave a message after the tone, thanks.",
    "Good evening. The subscriber cannot take your call. Please leave a message after the tone.",
    "Hi. You've reached Tom and Nina. We can't answer, but leave a message and we'll call.",
]
VOICES_V3 = [
    "en-us+Annie",
    "en-gb-x-rp+m2",
    "en-029+f4",
    "en-us-nyc+m6",
    "en-gb-x-gbclan+f2",
    "en-gb-scotland+m4",
    "en+Michael",
    "en-gb-x-gbcwmd+f1",
]
SPEEDS_V3 = [155, 170, 142, 185, 162, 178]

# The v4 (held-out) set: nothing shared with v1's, v2's or v3's texts or voices. Written
# before any change of round 4 (2026-12-04), from the same kind of ranges.
HUMAN_TEXTS_V4 = [
    "Hello, yes?",
    "Hiya.",
    "Yes, who's this?",
    "Hello, it's Ben.",
    "Hey.",
    "Hello, Maria speaking.",
    "Good evening.",
    "Yeah, hello?",
]
MACHINE_TEXTS_V4 = [
    "Hi, this is Greg. I'm not available right now, please leave a message after the beep.",
    "You have reached the Miller household. Leave a message and someone will return your call.",
    "Hello, thanks for calling Bright Star Insurance. Our office is now closed, please call again.",
    "Hey, it's Olivia. Can't talk right now, so leave a message and I'll get back to you.",
    "The mailbox you have dialled is not available. Please leave your message after the tone.",
    "Hello. You've reached Martin. I'm away from my desk, please leave a short message.",
    "Hi there, you've got Jess and Leo. Leave us a message and we'll call you back.",
    "Good morning, this is the front desk of City Clinic. Please leave your name and number.",
]
VOICES_V4 = [
    "en-gb+m7",
    "en-us+f4",
    "en-029+m3",
    "en-us-nyc+Andy",
    "en-gb-x-rp+f1",
    "en-gb-scotland+Linda",
    "en-us+m2",
    "en-gb-x-gbcwmd+Steph",
]
SPEEDS_V4 = [148, 172, 158, 183, 165, 141]
SET_SIZE = 48


@dataclass(frozen=True)
class Item:
    id: str
    label: str  # human | machine
    split: str  # tuning | heldout
    text: str
    voice: str
    speed: int
    lead_ms: int  # silence before the speech
    noise_rms: int  # 0: digital silence
    set: str = "v1"  # v1 (00-47), v2 (48-95), v3 (100-147): tuning | v4 (200-247): held out
    speech_ms: int = 0
    total_ms: int = 0


def plan_v1() -> list[Item]:
    """Item 2k is a human, 2k+1 a machine. Was split tuning/held-out by pair; all tuning now."""
    items: list[Item] = []
    for n in range(SET_SIZE):
        human = n % 2 == 0
        k = n // 2
        texts = HUMAN_TEXTS if human else MACHINE_TEXTS
        items.append(
            Item(
                id=f"{n:02d}",
                label="human" if human else "machine",
                split="tuning",
                text=texts[(k * 3 + (0 if human else 1)) % len(texts)],
                voice=VOICES[(k * 5 + (0 if human else 3)) % len(VOICES)],
                speed=SPEEDS[(k + (0 if human else 2)) % len(SPEEDS)],
                lead_ms=(250 + 110 * (k % 7)) if human else (150 + 180 * (k % 6)),
                noise_rms=(0, 40, 90, 0, 150)[k % 5],
            )
        )
    return items


def plan_v2() -> list[Item]:
    """Item 48+2k is a human, 48+2k+1 a machine (held out for one run, then tuning)."""
    items: list[Item] = []
    for n in range(SET_SIZE):
        human = n % 2 == 0
        k = n // 2
        texts = HUMAN_TEXTS_V2 if human else MACHINE_TEXTS_V2
        items.append(
            Item(
                id=f"{SET_SIZE + n:02d}",
                label="human" if human else "machine",
                split="tuning",
                text=texts[(k * 5 + (0 if human else 2)) % len(texts)],
                voice=VOICES_V2[(k * 3 + (0 if human else 5)) % len(VOICES_V2)],
                speed=SPEEDS_V2[(k + (0 if human else 3)) % len(SPEEDS_V2)],
                lead_ms=(220 + 115 * (k * 3 % 7)) if human else (120 + 190 * (k * 5 % 6)),
                noise_rms=(40, 0, 150, 90, 0, 60)[k % 6],
                set="v2",
            )
        )
    return items


def plan_v3() -> list[Item]:
    """Item 100+2k is a human, 100+2k+1 a machine (held out for rounds 2-3, then tuning)."""
    items: list[Item] = []
    for n in range(SET_SIZE):
        human = n % 2 == 0
        k = n // 2
        texts = HUMAN_TEXTS_V3 if human else MACHINE_TEXTS_V3
        items.append(
            Item(
                id=f"{100 + n:03d}",
                label="human" if human else "machine",
                split="tuning",
                text=texts[(k * 3 + (0 if human else 5)) % len(texts)],
                voice=VOICES_V3[(k * 5 + (0 if human else 2)) % len(VOICES_V3)],
                speed=SPEEDS_V3[(k + (0 if human else 1)) % len(SPEEDS_V3)],
                lead_ms=(240 + 110 * (k * 4 % 7)) if human else (140 + 185 * (k * 5 % 6)),
                noise_rms=(90, 0, 40, 150, 0, 60)[k % 6],
                set="v3",
            )
        )
    return items


def plan_v4() -> list[Item]:
    """The held-out set: item 200+2k is a human, 200+2k+1 a machine."""
    items: list[Item] = []
    for n in range(SET_SIZE):
        human = n % 2 == 0
        k = n // 2
        texts = HUMAN_TEXTS_V4 if human else MACHINE_TEXTS_V4
        items.append(
            Item(
                id=f"{200 + n:03d}",
                label="human" if human else "machine",
                split="heldout",
                text=texts[(k * 5 + (0 if human else 3)) % len(texts)],
                voice=VOICES_V4[(k * 3 + (0 if human else 4)) % len(VOICES_V4)],
                speed=SPEEDS_V4[(k + (0 if human else 2)) % len(SPEEDS_V4)],
                lead_ms=(230 + 110 * (k * 2 % 7)) if human else (130 + 185 * (k % 6)),
                noise_rms=(0, 60, 150, 40, 90, 0)[k % 6],
                set="v4",
            )
        )
    return items


def speak(item: Item, tmp: Path) -> np.ndarray:
    return speak_text(
        str(item.id),
        item.text,
        voice=item.voice,
        speed=item.speed,
        tmp=tmp,
        rate=RATE,
        peak=PEAK,
        sox_options=(),
    )


def render(item: Item, speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    def silence(ms: int) -> np.ndarray:
        return np.zeros(RATE * ms // 1000)

    if item.label == "human":
        # Says hello, then waits for the caller: 6 s of (played) silence.
        parts = [silence(item.lead_ms), speech, silence(6000)]
    else:
        # The greeting, the beep, then the recorder's silence.
        t = np.arange(RATE * 400 // 1000) / RATE
        beep = 9000 * np.sin(2 * np.pi * 1000 * t)
        parts = [silence(item.lead_ms), speech, silence(500), beep, silence(2500)]
    return mix(parts, item.noise_rms, rng)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/amd-corpus"))
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"amd-corpus: {tool} not found; run scripts/host-deps as root", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    # One generator per set, so v1's files stay what they were when v2 was added.
    rngs = {
        "v1": np.random.default_rng(20261204),
        "v2": np.random.default_rng(20261205),
        "v3": np.random.default_rng(20261206),
        "v4": np.random.default_rng(20261207),
    }
    labels = []
    with tempfile.TemporaryDirectory() as tmp_name:
        for item in plan_v1() + plan_v2() + plan_v3() + plan_v4():
            rng = rngs[item.set]
            speech = speak(item, Path(tmp_name))
            audio = render(item, speech, rng)
            (args.out / f"{item.id}.wav").write_bytes(encode_wav(Pcm(RATE, audio)))
            done = Item(
                **{
                    **asdict(item),
                    "speech_ms": len(speech) * 1000 // RATE,
                    "total_ms": len(audio) * 1000 // RATE,
                }
            )
            labels.append(asdict(done))
    (args.out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    held = sum(1 for x in labels if x["split"] == "heldout")
    print(f"amd-corpus: {len(labels)} greetings ({held} held out) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
