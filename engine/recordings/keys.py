"""Where the engine's KEKs come from: ``[recordings] kek_file`` or ``kek_env``; with neither, a
key file generated once under the data directory, so encryption is on by default."""

from __future__ import annotations

import os
from pathlib import Path

from engine.recordings.config import RecordingsSection
from engine.recordings.crypto import KekError, KeyRing, load_keys, new_kek_line
from engine.telemetry.logging import get_logger

log = get_logger("engine.recordings")

GENERATED = "recording-keks"


def key_ring(
    section: RecordingsSection, *, base: Path, data_dir: Path, instance: str, create: bool = True
) -> KeyRing:
    """The KEK ring; ``create=False`` (tools): a missing generated key file is an error."""
    if section.kek_env:
        return load_keys(env=section.kek_env)
    if section.kek_file:
        path = Path(section.kek_file)
        return load_keys(file=path if path.is_absolute() else base / path)
    path = data_dir / GENERATED
    if not path.exists() and not create:
        raise KekError(f"{path}: no KEK file (the engine generates it at its first start)")
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # A key id of its own (instance and random), never reused by another engine's
        # generated key: engines sharing one database must share a kek_file instead.
        write_new_kek(path, f"local-{instance}-{os.urandom(4).hex()}")
        log.warning("generated a recording KEK file; back it up", path=str(path))
    return load_keys(file=path)


def write_new_kek(path: Path, kid: str) -> None:
    """Put a new KEK on top of the key file (it becomes the current one), mode 0600; the old
    keys stay below it until every data key was re-wrapped (``engine recordings rewrap``)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if any(line.split(":", 1)[0].strip() == kid for line in old.splitlines()):
        raise KekError(f"{path}: key id {kid!r} is already there")
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (new_kek_line(kid) + "\n" + old).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
