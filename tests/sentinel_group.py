"""A Redis master, its replicas and a Sentinel group, all owned by the test.

Real ``redis-server`` processes on free loopback ports under a temp dir: one
master, ``replicas`` replicas and ``sentinels`` sentinels (``redis-server
--sentinel``, the same binary Debian's redis-sentinel package runs). No
persistence: a server killed is gone with its data, as a host that died
would be. Sentinel timeouts are small so a failover takes a couple of
seconds (``down_after_ms``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

MASTER = "mymaster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed (Debian package redis-server)")
    return found


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def client(self, timeout_s: float = 1.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout_s, decode_responses=True
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or replicas."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class SentinelGroup:
    directory: Path
    replicas: int = 2
    sentinels: int = 3
    down_after_ms: int = 500
    failover_timeout_ms: int = 3000
    servers: list[Node] = field(default_factory=list)
    watchers: list[Node] = field(default_factory=list)

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.watchers]

    def start(self, timeout_s: float = 30.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        master_port = free_port()
        for i in range(1 + self.replicas):
            port = master_port if i == 0 else free_port()
            node = Node(f"redis-{i}", port)
            args = [
                _binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                # Sync replicas at once (the default waits 5 s for more replicas to share
                # one transfer): a replica not yet synced has nothing to take over with.
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                str(self.directory),
                "--dbfilename",
                f"{node.name}.rdb",
                "--logfile",
                str(self.directory / f"{node.name}.log"),
            ]
            if i:
                args += ["--replicaof", "127.0.0.1", str(master_port)]
            node.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.servers.append(node)
        # Sentinels only once the replicas are in sync: a sentinel reads the master's INFO
        # for replicas at start and then every 10 s, so one started early waits 10 s to
        # learn of them.
        self._wait(self._replicas_online, timeout_s)
        for i in range(self.sentinels):
            node = Node(f"sentinel-{i}", free_port())
            conf = self.directory / f"{node.name}.conf"
            # Sentinel rewrites its own file (discovered peers, the new master).
            conf.write_text(
                f"bind 127.0.0.1\nport {node.port}\ndir {self.directory}\n"
                f"logfile {self.directory / (node.name + '.log')}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER} 2\n"
            )
            node.proc = subprocess.Popen(
                [_binary(), str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.watchers.append(node)
        # Every sentinel sees the replicas and its peers (sentinels find each other through
        # the master's hello channel, every 2 s): only then can they agree on a failover.
        self._wait(self._ready, timeout_s)

    def _wait(self, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            for node in self.servers + self.watchers:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"{node.name} exited: {self.log_tail(node)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sentinel group not ready in {timeout_s}s")
            time.sleep(0.1)

    def _replicas_online(self) -> bool:
        try:
            with self.servers[0].client() as c:
                info = c.info("replication")
        except (redis.exceptions.RedisError, OSError):
            return False
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return [r["state"] for r in online] == ["online"] * self.replicas

    def _ready(self) -> bool:
        try:
            for node in self.watchers:
                with node.client() as c:
                    state = c.sentinel_master(MASTER)
                if int(state["num-slaves"]) != self.replicas:
                    return False
                if int(state["num-other-sentinels"]) != self.sentinels - 1:
                    return False
        except (redis.exceptions.RedisError, OSError):
            return False
        return True

    def master(self) -> Node | None:
        """The server the sentinels name as master now (None while none answers)."""
        for watcher in self.watchers:
            try:
                with watcher.client() as c:
                    addr = c.sentinel_get_master_addr_by_name(MASTER)
            except (redis.exceptions.RedisError, OSError):
                continue
            if addr:
                return next((n for n in self.servers if n.port == int(addr[1])), None)
        return None

    def log_tail(self, node: Node, lines: int = 20) -> str:
        path = self.directory / f"{node.name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        for node in self.watchers + self.servers:
            node.kill()


@contextlib.contextmanager
def running_group(prefix: str = "sentinel-") -> Iterator[SentinelGroup]:
    """A started group in its own temp dir, stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    group = SentinelGroup(directory)
    try:
        group.start()
        yield group
    finally:
        group.stop()
        shutil.rmtree(directory, ignore_errors=True)
