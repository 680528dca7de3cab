"""Where rendered prompts go and how the switch names them, from the environment.

Two settings because the engine and the switch may see the file system
differently (a chroot, a container, a shared volume):

* ``ENGINE_TTS_DIR``: the directory the *engine* writes into.
* ``ENGINE_TTS_PREFIX``: how the *switch* names that directory in a prompt:
  relative to its sounds directory (``engine-tts``) or an absolute path in its
  own view of the file system. Defaults to ``ENGINE_TTS_DIR`` itself, which is
  right whenever engine and switch share one file system.

Until the engine config grows a ``[tts]`` table (see docs/ivr.md), these
environment variables are the only knobs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_TTS_DIR", "TtsSettings"]

# Debian/Ubuntu packages and source builds both have /var/lib/asterisk/sounds;
# Asterisk plays an absolute path as is, whatever its astdatadir.
DEFAULT_TTS_DIR = Path("/var/lib/asterisk/sounds/engine-tts")
_PREFIX = re.compile(r"^/?(?!.*\.\.)[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


@dataclass(frozen=True, slots=True)
class TtsSettings:
    directory: Path = DEFAULT_TTS_DIR
    prefix: str = str(DEFAULT_TTS_DIR)
    espeak_binary: str = "espeak-ng"
    timeout_s: float = 15.0

    def __post_init__(self) -> None:
        check_prefix(self.prefix, "prefix")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(
                f"timeout_s: expected a positive number of seconds, got {self.timeout_s}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TtsSettings:
        """Read ENGINE_TTS_DIR, ENGINE_TTS_PREFIX, ENGINE_TTS_ESPEAK, ENGINE_TTS_TIMEOUT_S."""
        env = os.environ if env is None else env
        directory = Path(env.get("ENGINE_TTS_DIR") or DEFAULT_TTS_DIR)
        if not directory.is_absolute():
            raise ValueError(f"ENGINE_TTS_DIR: expected an absolute path, got {str(directory)!r}")
        prefix = env.get("ENGINE_TTS_PREFIX") or str(directory)
        check_prefix(prefix, "ENGINE_TTS_PREFIX")
        raw_timeout = env.get("ENGINE_TTS_TIMEOUT_S") or "15"
        try:
            timeout_s = float(raw_timeout)
        except ValueError:
            timeout_s = -1.0
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(
                f"ENGINE_TTS_TIMEOUT_S: expected a positive number of seconds, got {raw_timeout!r}"
            )
        return cls(
            directory=directory,
            prefix=prefix,
            espeak_binary=env.get("ENGINE_TTS_ESPEAK") or "espeak-ng",
            timeout_s=timeout_s,
        )


def check_prefix(prefix: str, what: str) -> str:
    """A prompt prefix: path segments of ``[A-Za-z0-9_.-]``, no ``..``, no trailing ``/``.

    It ends up inside an AGI command line, so spaces and quotes are refused too.
    """
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"{what}: expected a sound directory name such as 'engine-tts' or an absolute "
            f"path such as '/var/lib/asterisk/sounds/engine-tts' (got {prefix!r})"
        )
    return prefix
