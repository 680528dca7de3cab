"""Helpers shared by the embedded PostgreSQL and Redis servers.

Both embedded servers are blocking, process-managing code (fork a server,
wait for its socket, read its log). They are written as plain synchronous
classes and the async stores call them through :func:`asyncio.to_thread`, so
the event loop never blocks on ``waitpid`` or a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.store.errors import EmbeddedServerError

# sun_path is 108 bytes on Linux (104 on BSD/macOS) including the NUL. A unix
# socket whose full path is longer cannot be bound at all, and the server's
# error for that is obscure, so we check up front and fall back to /tmp.
MAX_UNIX_SOCKET_PATH = 100

LOG_TAIL_LINES = 40


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a server log, or a note saying why there are none."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError as err:
        return f"(no log at {path}: {err.strerror})"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    if not text:
        return f"(log {path} is empty)"
    return "\n".join(text)


def server_error(message: str, log: Path, detail: str = "") -> EmbeddedServerError:
    """An :class:`EmbeddedServerError` whose message ends with the log tail."""
    parts = [message]
    if detail.strip():
        parts.append(detail.strip())
    parts.append(f"--- last lines of {log} ---\n{log_tail(log)}")
    return EmbeddedServerError("\n".join(parts))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (flock) held for the ``with`` block.

    Two processes starting the engine on the same data directory at once
    must not both run initdb or both launch a server: whoever gets the lock
    first starts it, the other then sees it running and reuses it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def socket_dir_for(preferred: Path, tag: str) -> Path:
    """``preferred`` if a socket in it fits in ``sun_path``, else a short stable /tmp dir.

    The fallback name hashes the preferred path, so the same data directory
    always maps to the same socket directory and a running server is found
    again by the next start.
    """
    # ".s.PGSQL.5432" / "redis.sock" are at most 14 bytes; keep a margin.
    if len(str(preferred)) + 16 <= MAX_UNIX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"engine-{tag}-{digest}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Exists but belongs to another user (e.g. the unprivileged postgres user).
        return True
    return True


def can_traverse(path: Path, uid: int, gids: Sequence[int]) -> Path | None:
    """The first directory on the way to ``path`` that ``uid`` cannot enter, or None."""
    current = path.resolve()
    chain = [current, *current.parents]
    for directory in reversed(chain):
        if not directory.exists():
            break
        st = directory.stat()
        mode = st.st_mode
        if uid == 0:
            continue
        if st.st_uid == uid:
            ok = bool(mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(mode & stat.S_IXGRP)
        else:
            ok = bool(mode & stat.S_IXOTH)
        if not ok:
            return directory
    return None


def run_checked(
    argv: Sequence[str],
    *,
    what: str,
    log: Path,
    timeout_s: float,
    user: int | None = None,
    group: int | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a server command; on failure raise :class:`EmbeddedServerError` with the log tail.

    Output goes to temporary files, not pipes: ``pg_ctl start`` leaves the
    postmaster holding inherited pipe ends, and ``communicate()`` would then
    wait for EOF forever.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.run(
                list(argv),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=timeout_s,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
                cwd=cwd,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise server_error(f"{what}: timed out after {timeout_s:.0f}s", log) from exc
        except OSError as exc:
            raise server_error(f"{what}: cannot run {argv[0]}: {exc}", log) from exc
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise server_error(
            f"{what}: {Path(argv[0]).name} exited with status {proc.returncode}",
            log,
            detail=f"{stderr}\n{stdout}",
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
