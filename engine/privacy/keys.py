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
            if _generate(path, f"local-{instance}"[:64]):
                log.warning("generated the pseudonym key; back it up", path=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PseudonymKeyError(f"{path}: cannot read the pseudonym key ({err.strerror})") from err
    return parse_key(text, str(path))


def _generate(path: Path, kid: str) -> bool:
    """Write a new key file at ``path`` unless one appears meanwhile; False when another
    process won. The key is complete on disk before it has its name (a hard link is atomic
    and refuses an existing name), so a reader never sees half a key, and two engines started
    together on one data directory end up with the same key."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (new_key_line(kid) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True
