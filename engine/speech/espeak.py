"""espeak-ng as a TTS plugin, called as a subprocess.

Why a subprocess and not pyttsx3 (or libespeak-ng through ctypes): see
docs/ivr.md. In short, a child process can be killed on a timeout, isolates
libespeak-ng's process-global state from the engine, and hands back a WAV we
then convert to 8 kHz ourselves.
"""

from __future__ import annotations

import re
import subprocess

from engine.speech.tts import SynthesisFailed, UnknownVoice

__all__ = ["EspeakNg", "parse_voice_list"]

# "(zh-cmn 5)(zh 5)": other language codes a voice answers to, with priorities.
_ALIAS = re.compile(r"\(([^\s()]+)\s+\d+\)")


def parse_voice_list(output: str) -> frozenset[str]:
    """Names from ``espeak-ng --voices``: the Language column plus its aliases.

    The table is whitespace-separated::

        Pty Language        Age/Gender VoiceName   File                Other Languages
         5  cmn-latn-pinyin --/M      Chinese_(...) sit/cmn-Latn-pinyin (zh-cmn 5)(zh 5)

    VoiceName has no spaces (espeak-ng writes underscores), so the language is
    the second field. ``-v`` matches names case-insensitively; we lower-case.
    """
    names: set[str] = set()
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0].isdigit():
            continue  # header, blank or garbage line
        names.add(fields[1].lower())
        rest = " ".join(fields[5:])
        names.update(alias.lower() for alias in _ALIAS.findall(rest))
    return frozenset(names)


class EspeakNg:
    """``espeak-ng -v <voice> --stdout`` with the text on stdin.

    The text goes through stdin, never argv: a prompt starting with ``-`` would
    otherwise be taken for an option, and argv is visible to every local user
    in ``ps``. ``-b 1`` declares the input UTF-8 (hanzi, accented letters).
    """

    name = "espeak-ng"

    def __init__(self, binary: str = "espeak-ng", *, timeout_s: float = 15.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._binary = binary
        self._timeout_s = timeout_s
        self._voices: frozenset[str] | None = None

    def voices(self) -> frozenset[str]:
        if self._voices is None:
            out = self._run([self._binary, "--voices"], b"", "listing voices")
            voices = parse_voice_list(out.decode("utf-8", "replace"))
            if not voices:
                raise SynthesisFailed(f"{self._binary} --voices listed no voices")
            self._voices = voices
        return self._voices

    def synthesize(self, text: str, voice: str) -> bytes:
        if voice.lower() not in self.voices():
            raise UnknownVoice(self.name, voice)
        cmd = [self._binary, "-b", "1", "-v", voice, "--stdout"]
        return self._run(cmd, text.encode("utf-8"), f"voice {voice!r}")

    def _run(self, cmd: list[str], stdin: bytes, what: str) -> bytes:
        try:
            done = subprocess.run(
                cmd, input=stdin, capture_output=True, timeout=self._timeout_s, check=False
            )
        except FileNotFoundError as err:
            raise SynthesisFailed(
                f"{self._binary} not found (install espeak-ng: scripts/host-deps, "
                "or set ENGINE_TTS_ESPEAK)"
            ) from err
        except subprocess.TimeoutExpired as err:
            # subprocess.run has already killed the child.
            raise SynthesisFailed(
                f"{self._binary} ({what}) took more than {self._timeout_s:g}s; killed"
            ) from err
        except OSError as err:
            raise SynthesisFailed(f"cannot run {self._binary}: {err}") from err
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
            raise SynthesisFailed(
                f"{self._binary} ({what}) exited {done.returncode}: {detail[:300]}"
            )
        if not done.stdout:
            raise SynthesisFailed(f"{self._binary} ({what}) produced no output")
        return done.stdout
