"""Warm ASR worker processes, one utterance each at a time (see :mod:`.worker` for why).

Loading a model takes seconds (Vosk's Korean model ~1-4 s, PocketSphinx ~0.4 s), so workers
are started ahead (``warm``) and reused; a caller waits for a free one when all ``size`` are
busy. A worker that dies or errs on the pipe is discarded and the next utterance starts a
fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from engine.speech.asr.base import Alternative, Hypothesis
from engine.speech.asr.wire import HEADER, decode_header, encode

log = logging.getLogger(__name__)

#: Model load, or one utterance's final pass: beyond this the worker is taken for stuck.
LOAD_TIMEOUT_S = 60.0
RESULT_TIMEOUT_S = 20.0


class AsrUnavailable(RuntimeError):
    """The plugin's worker could not be started or failed (named in the message)."""


@dataclass(eq=False)
class _Worker:
    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def read_frame(self, timeout_s: float) -> tuple[bytes, dict[str, object]]:
        async with asyncio.timeout(timeout_s):
            header = await self.reader.readexactly(HEADER.size)
            kind, size = decode_header(header)
            payload = await self.reader.readexactly(size) if size else b""
        return kind, json.loads(payload) if payload else {}

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            await asyncio.wait_for(self.proc.wait(), 5)


class Utterance:
    """One utterance on one worker: ``accept`` as audio comes, then ``finish``."""

    def __init__(self, worker: _Worker) -> None:
        self._w = worker
        self.failed: str | None = None

    def accept(self, pcm: bytes) -> None:
        if self.failed is None and len(pcm):
            self._w.writer.write(encode(b"A", pcm))

    async def finish(self) -> Hypothesis:
        if self.failed is not None:
            raise AsrUnavailable(self.failed)
        self._w.writer.write(encode(b"E"))
        try:
            await asyncio.wait_for(self._w.writer.drain(), RESULT_TIMEOUT_S)
            kind, body = await self._w.read_frame(RESULT_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as err:
            self.failed = f"ASR worker lost: {type(err).__name__}"
            raise AsrUnavailable(self.failed) from err
        if kind != b"R":
            raise AsrUnavailable(f"ASR worker error: {body.get('error', kind)}")
        alts = body.get("alternatives") or []
        assert isinstance(alts, list)
        return Hypothesis(
            str(body.get("text", "")),
            float(body.get("confidence", 0.0)),  # type: ignore[arg-type]
            tuple(Alternative(str(t), float(c)) for t, c in alts),
        )


class RecognizerPool:
    def __init__(self, plugin: str, *, size: int = 2, model_dir: str | None = None) -> None:
        if size < 1:
            raise ValueError(f"ASR pool for {plugin}: size must be >= 1, got {size}")
        self.plugin = plugin
        self.model_dir = model_dir
        self.size = size
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._slots = asyncio.Semaphore(size)

    async def _spawn(self) -> _Worker:
        args = [sys.executable, "-m", "engine.speech.asr.worker", self.plugin]
        if self.model_dir:
            args.append(self.model_dir)
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None and proc.stdin is not None
        worker = _Worker(proc, proc.stdout, proc.stdin)
        try:
            kind, body = await worker.read_frame(LOAD_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError) as err:
            await worker.kill()
            raise AsrUnavailable(f"ASR plugin {self.plugin}: the worker did not start") from err
        if kind != b"K":
            await worker.kill()
            raise AsrUnavailable(f"ASR plugin {self.plugin}: {body.get('error', 'failed')}")
        self._all.add(worker)
        return worker

    async def warm(self, n: int | None = None) -> None:
        """Start workers ahead so the first callers do not wait for a model load."""
        want = min(self.size, n if n is not None else self.size)
        while len(self._all) < want:
            self._idle.append(await self._spawn())

    @contextlib.asynccontextmanager
    async def utterance(
        self, rate: int, keywords: Sequence[str] | None
    ) -> AsyncIterator[Utterance]:
        async with self._slots:
            worker = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.alive():
                    worker = candidate
                    break
                self._all.discard(candidate)
            if worker is None:
                worker = await self._spawn()
            start = {"rate": rate, "keywords": list(keywords) if keywords else None}
            worker.writer.write(encode(b"S", json.dumps(start, ensure_ascii=False).encode()))
            utt = Utterance(worker)
            ok = False
            try:
                yield utt
                ok = utt.failed is None
            finally:
                if ok and worker.alive():
                    self._idle.append(worker)
                else:
                    self._all.discard(worker)
                    await worker.kill()

    async def stop(self) -> None:
        for worker in list(self._all):
            worker.writer.close()
            await worker.kill()
        self._all.clear()
        self._idle.clear()
