"""Content-addressed prompt cache: each (engine, voice, text) is rendered once.

The file name is a hash of the engine name, the voice, the text and the output
format, so a changed prompt gets a new file (a call already playing the old
one is not disturbed) and an unchanged one is never rendered twice, across
reloads and restarts alike. Files are written to a temporary name and renamed
into place: the switch must never open a half-written WAV.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from engine.speech.settings import check_prefix
from engine.speech.tts import SynthesisFailed, Synthesizer
from engine.speech.wav import TELEPHONY_RATE, WavError, decode_wav, encode_wav, resample

__all__ = ["OUTPUT_FORMAT", "PromptCache"]

# Part of the cache key: bump it when the conversion changes so old files are
# not reused with a different meaning.
OUTPUT_FORMAT = "wav-8000-s16le-mono-v1"
# Asterisk's file lookup (and FreeSWITCH's) is by name; readable by the switch's
# user, which is usually not ours. mkstemp creates 0600 files.
_FILE_MODE = 0o644


class PromptCache:
    """Renders text to ``<directory>/<hash>.wav``; the switch plays ``<prefix>/<hash>``."""

    def __init__(self, synthesizer: Synthesizer, directory: Path, prefix: str) -> None:
        self._synth = synthesizer
        self.directory = directory
        self.prefix = check_prefix(prefix, "prefix").rstrip("/")
        self._inflight: dict[str, asyncio.Future[Path]] = {}
        self.renders = 0  # how many times the synthesizer actually ran

    @property
    def engine(self) -> str:
        return self._synth.name

    def voices(self) -> frozenset[str]:
        """The engine's voices (blocking the first time; raises :class:`TtsError`)."""
        return self._synth.voices()

    def key(self, text: str, voice: str) -> str:
        material = "\0".join((self._synth.name, voice.lower(), text, OUTPUT_FORMAT))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]

    def path_for(self, text: str, voice: str) -> Path:
        return self.directory / f"{self.key(text, voice)}.wav"

    def prompt_name(self, path: Path) -> str:
        """What to pass to ``CallSession.play``: no extension, the switch picks ``.wav``."""
        return f"{self.prefix}/{path.stem}"

    def render_sync(self, text: str, voice: str) -> Path:
        """Blocking render (or cache hit). Raises :class:`TtsError` on any failure."""
        path = self.path_for(text, voice)
        if path.is_file():
            return path
        raw = self._synth.synthesize(text, voice)
        self.renders += 1
        try:
            pcm = decode_wav(raw)
        except WavError as err:
            raise SynthesisFailed(f"{self._synth.name} returned an unusable WAV: {err}") from err
        if len(pcm.samples) == 0:
            raise SynthesisFailed(f"{self._synth.name} produced no audio for {text[:40]!r}")
        self._write(path, encode_wav(resample(pcm, TELEPHONY_RATE)))
        return path

    async def render(self, text: str, voice: str) -> Path:
        """Path of the 8 kHz mono 16-bit WAV for ``text`` in ``voice``.

        A cache hit costs one ``stat``. A miss runs the synthesizer in a worker
        thread (the synthesizer enforces its own timeout); concurrent callers
        asking for the same prompt share one render.
        """
        path = self.path_for(text, voice)
        if path.is_file():
            return path
        key = path.stem
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await asyncio.to_thread(self.render_sync, text, voice)
        except BaseException as err:
            if isinstance(err, Exception):
                future.set_exception(err)
            else:
                future.cancel()
            # Nobody else may be waiting; do not log "exception never retrieved".
            with contextlib.suppress(BaseException):
                future.exception()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    def _write(self, path: Path, data: bytes) -> None:
        try:
            # Only the last level is created: a missing parent usually means the
            # sounds directory is wrong, and guessing would hide that.
            self.directory.mkdir(mode=0o755, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".render-", suffix=".tmp")
        except OSError as err:
            raise SynthesisFailed(
                f"cannot write prompts to {self.directory}: {err} (set ENGINE_TTS_DIR to a "
                "directory the switch can read)"
            ) from err
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SynthesisFailed(f"cannot write {path}: {err}") from err
