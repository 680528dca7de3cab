"""How well the Korean Vosk model hears a Korean test voice, with no grammar: the character
error rate of a free decode of everyday sentences that no ASR corpus split says.

    TTS_KO_VOICES=ko,mb-hn1-stock,mb-hn1 TTS_KO_SET=check .venv/bin/python -m bench.tts_ko

``TTS_KO_SET``: ``dev`` (the sentences the hn1 table was iterated on, round 9 of
docs/speech.md) or ``check`` (20 other sentences, decoded only before and after). Voices:
espeak-ng's (``ko``, ``ko+m3`` ...) or scripts/mbrola_ko.py's (``mb-hn1``, ``mb-hn1-pNN``,
``mb-hn1-stock``). Each sentence is spoken at ``TTS_KO_SPEED`` (160) words per minute, made
8 kHz the way scripts/asr_corpus.py makes its files (sox, peak 14000), and decoded whole by
the engine's Vosk plugin (its model, seeded dither) at 8 kHz. Writes reports/tts-ko.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.speech.asr.vosk_plugin import VoskEngine
from scripts.corpus_audio import speak_text

ROOT = Path(__file__).resolve().parent.parent

#: Sentences the table was checked against while it was written (listening to Vosk).
DEV = (
    "오늘 아침에 커피를 마셨어요",
    "저는 서울에 살고 있어요",
    "주말에 친구를 만날 거예요",
    "이 책은 정말 재미있어요",
    "버스 정류장이 어디에 있어요",
    "날씨가 많이 추워졌어요",
    "학교에 가는 길이에요",
    "점심으로 김치찌개를 먹었어요",
    "우리 집 고양이는 잠을 많이 자요",
    "내일은 비가 올 것 같아요",
    "은행은 몇 시에 문을 닫아요",
    "저는 한국 음식을 좋아해요",
    "어제 영화를 봤는데 재미없었어요",
    "기차표를 두 장 사고 싶어요",
    "동생이 대학교에 합격했어요",
)
#: Decoded only for the before and after figures, never while the table changed.
CHECK = (
    "아버지는 회사에 다니세요",
    "시장에서 사과를 샀어요",
    "지하철이 너무 붐벼요",
    "생일 축하해요",
    "창문 좀 열어 주시겠어요",
    "병원에 가야 해요",
    "어머니께서 요리를 하세요",
    "공원에서 산책을 했어요",
    "이번 주는 바빠요",
    "물 한 잔 마시고 싶어요",
    "우체국이 어디 있는지 아세요",
    "여름 방학에 바다에 갔어요",
    "아이들이 운동장에서 놀아요",
    "도서관에서 공부했어요",
    "저녁에 뭐 먹을까요",
    "비행기가 곧 출발해요",
    "한국어를 배우고 있어요",
    "커피 두 잔 마실래요",
    "강아지가 짖고 있어요",
    "오늘은 일찍 잘 거예요",
)
SETS = {"dev": DEV, "check": CHECK}
RATE = 8000


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def chars(text: str) -> str:
    """The text without spaces or punctuation: Korean spacing varies, the syllables do not."""
    return "".join(c for c in text if c.isalnum())


def decode(engine: VoskEngine, samples: np.ndarray) -> str:
    rec = engine.recognizer(RATE, None)
    rec.accept(np.asarray(samples, dtype="<i2").tobytes())
    return rec.finish().text


def run(voice: str, sentences: tuple[str, ...], engine: VoskEngine, speed: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    errors = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, text in enumerate(sentences):
            speech = speak_text(
                f"s{n}",
                text,
                voice=voice,
                speed=speed,
                tmp=Path(tmp),
                rate=RATE,
                peak=14000,
                sox_options=("-G",),
            )
            silence = np.zeros(RATE // 2)
            audio = np.concatenate([silence, speech, silence])
            heard = decode(engine, np.round(audio).astype(np.int16))
            wrong = edit_distance(chars(text), chars(heard))
            errors += wrong
            rows.append({"said": text, "heard": heard, "errors": wrong})
    total = sum(len(chars(s)) for s in sentences)
    exact = sum(1 for r in rows if r["errors"] == 0)
    return {"voice": voice, "cer": round(errors / total, 3), "exact": exact, "rows": rows}


def main() -> None:
    voices = os.environ.get("TTS_KO_VOICES", "ko,mb-hn1").split(",")
    which = os.environ.get("TTS_KO_SET", "dev")
    speed = int(os.environ.get("TTS_KO_SPEED", "160"))
    sentences = SETS[which]
    engine = VoskEngine()
    out: dict[str, Any] = {"set": which, "speed": speed, "loadavg_at_start": os.getloadavg()}
    for voice in voices:
        t0 = time.monotonic()
        res = run(voice, sentences, engine, speed)
        out[voice] = res
        print(
            f"{voice}: CER {res['cer']:.3f}, {res['exact']}/{len(sentences)} sentences exact "
            f"({time.monotonic() - t0:.0f} s)"
        )
        if os.environ.get("TTS_KO_VERBOSE", "1") == "1":
            for r in res["rows"]:
                print(f"  {r['errors']:2d} {r['said']} -> {r['heard']}")
    path = ROOT / "reports" / "tts-ko.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
