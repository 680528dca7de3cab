"""Where the pseudonym key comes from: ``[privacy] pseudonym_key_file`` or
``pseudonym_key_env``; with neither, a key file generated once under the data directory."""

from __future__ import annotations

import os
from pathlib import Path

from engine.privacy.config import PrivacySection
from engine.privacy.subject import PseudonymKey, PseudonymKeyError, new_key_line, parse_key
from engine.telemetry.logging import get_logger

log = get_logger("engine.privacy")

GENERATED = "pseudonym-key"


def pseudonym_key(
    section: PrivacySection, *, base: Path, data_dir: Path, instance: str
) -> PseudonymKey:
    if section.pseudonym_key_env:
        value = os.environ.get(section.pseudonym_key_env)
        if not value:
            raise PseudonymKeyError(
                f"environment variable {section.pseudonym_key_env} is not set or empty"
            )
        return parse_key(value, f"${section.pseudonym_key_env}")
    if section.pseudonym_key_file:
        path = Path(section.pseudonym_key_file)
        path = path if path.is_absolute() else base / path
    else:
        path = data_dir / GENERATED
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, (new_key_line(f"local-{instance}"[:64]) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            log.warning("generated the pseudonym key; back it up", path=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PseudonymKeyError(f"{path}: cannot read the pseudonym key ({err.strerror})") from err
    return parse_key(text, str(path))
