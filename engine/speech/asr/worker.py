"""An ASR worker process: ``python -m engine.speech.asr.worker PLUGIN [MODEL_DIR]``.

Recognition runs here, not on the engine's event loop: PocketSphinx holds the GIL while it
decodes (measured: a thread decoding 9 s of audio stalled the loop for up to 1 s at a time),
so a thread would not do; a process also keeps a crashing native decoder away from the
engine. One worker decodes one utterance at a time, streaming: audio is decoded as it
arrives, so at the end of speech only the last frames and the search's final pass remain.
"""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO

from engine.speech.asr import load_engine
from engine.speech.asr.base import Recognizer
from engine.speech.asr.wire import HEADER, decode_header, encode


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


def serve(plugin: str, model_dir: str | None, inp: BinaryIO, out: BinaryIO) -> int:
    def send(kind: bytes, payload: dict[str, object]) -> None:
        out.write(encode(kind, json.dumps(payload, ensure_ascii=False).encode()))
        out.flush()

    try:
        engine = load_engine(plugin, model_dir)
    except Exception as err:
        send(b"X", {"error": f"{type(err).__name__}: {err}"})
        return 1
    send(b"K", {"plugin": plugin})
    rec: Recognizer | None = None
    while True:
        header = _read_exact(inp, HEADER.size)
        if header is None:
            return 0  # the engine closed the pipe
        kind, size = decode_header(header)
        payload = _read_exact(inp, size) if size else b""
        if payload is None:
            return 0
        try:
            if kind == b"S":
                start = json.loads(payload)
                rec = engine.recognizer(int(start["rate"]), start.get("keywords") or None)
            elif kind == b"A":
                if rec is not None:
                    rec.accept(payload)
            elif kind == b"E":
                if rec is None:
                    send(b"X", {"error": "end of utterance without a start"})
                    continue
                hyp = rec.finish()
                rec = None
                send(
                    b"R",
                    {
                        "text": hyp.text,
                        "confidence": hyp.confidence,
                        "alternatives": [[a.text, a.confidence] for a in hyp.alternatives],
                    },
                )
            else:
                send(b"X", {"error": f"unknown frame type {kind!r}"})
        except Exception as err:
            rec = None
            send(b"X", {"error": f"{type(err).__name__}: {err}"})


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m engine.speech.asr.worker PLUGIN [MODEL_DIR]", file=sys.stderr)
        return 2
    # The protocol gets its own copy of stdout, and fd 1 becomes stderr: a native library
    # that prints (Kaldi, PocketSphinx) would otherwise corrupt the frames.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return serve(argv[0], argv[1] if len(argv) > 1 else None, sys.stdin.buffer, out)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
