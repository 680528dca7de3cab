"""Build the labelled AMD corpus: short human hellos and long machine greetings.

    python scripts/amd_corpus.py [--out var/amd-corpus]

Writes ``NN.wav`` (8 kHz, mono, 16-bit: what Asterisk's format_wav plays) and
``labels.json`` (``[{"id": "07", "label": "human", "split": "tuning", ...}]``).
Deterministic: the texts, voices, speeds, pauses and the noise (numpy, fixed seed) are fixed
here, so the same espeak-ng and sox give the same files. Needs ``espeak-ng`` and ``sox``
(scripts/host-deps).

The split is fixed: even NN are the tuning half (look at them while choosing parameters),
odd NN the held-out half (run only to report). Every file is played in full by the sandbox
carrier's 77NN numbers, silences included: they are real audio frames (samples of zero or
low noise), never a pause without RTP, which AMD could not time (carrier-test.conf).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.speech.wav import Pcm, decode_wav, encode_wav

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
    speech_ms: int = 0
    total_ms: int = 0


def plan(pairs: int) -> list[Item]:
    """Item 2k is a human, 2k+1 a machine."""
    items: list[Item] = []
    for n in range(2 * pairs):
        human = n % 2 == 0
        k = n // 2
        texts = HUMAN_TEXTS if human else MACHINE_TEXTS
        items.append(
            Item(
                id=f"{n:02d}",
                label="human" if human else "machine",
                # Pairs (2k, 2k+1) are one human and one machine; alternate which of the
                # pair is held out so both halves get both labels.
                split="tuning" if (n // 2) % 2 == n % 2 else "heldout",
                text=texts[(k * 3 + (0 if human else 1)) % len(texts)],
                voice=VOICES[(k * 5 + (0 if human else 3)) % len(VOICES)],
                speed=SPEEDS[(k + (0 if human else 2)) % len(SPEEDS)],
                lead_ms=(250 + 110 * (k % 7)) if human else (150 + 180 * (k % 6)),
                noise_rms=(0, 40, 90, 0, 150)[k % 5],
            )
        )
    return items


def speak(item: Item, tmp: Path) -> np.ndarray:
    raw, out = tmp / f"{item.id}-raw.wav", tmp / f"{item.id}-8k.wav"
    subprocess.run(
        ["espeak-ng", "-v", item.voice, "-s", str(item.speed), "-w", str(raw), item.text],
        check=True,
        timeout=60,
    )
    # sox resamples with a proper anti-alias filter (espeak-ng writes 22050 Hz). -D: no
    # dither, which is random noise and would make every run's files differ.
    subprocess.run(
        ["sox", "-D", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)],
        check=True,
        timeout=60,
    )
    samples = decode_wav(out.read_bytes()).samples.astype(np.float64)
    # espeak pads its output with silence; keep the speech only, the plan adds its own.
    loud = np.flatnonzero(np.abs(samples) > 200)
    if len(loud):
        samples = samples[loud[0] : loud[-1] + 1]
    peak = float(np.abs(samples).max()) or 1.0
    return samples * (PEAK / peak)


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
    audio = np.concatenate(parts)
    if item.noise_rms:
        audio = audio + rng.normal(0.0, item.noise_rms, len(audio))
    return np.asarray(np.clip(np.round(audio), -32768, 32767), dtype=np.int16)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("var/amd-corpus"))
    parser.add_argument("--pairs", type=int, default=24, help="one human + one machine each")
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"amd-corpus: {tool} not found; run scripts/host-deps as root", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261204)
    labels = []
    with tempfile.TemporaryDirectory() as tmp_name:
        for item in plan(args.pairs):
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
