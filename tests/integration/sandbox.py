"""Helpers for tests that run against the real Asterisk 22 sandbox (scripts/asterisk-sandbox).

Plain functions, no pytest fixtures: integration tests (and benchmarks) call them directly.

The AMI helpers here are deliberately tiny and independent of the engine's own AMI client, so a
bug in the engine's codec cannot hide a broken sandbox (and vice versa). They speak the wire
format directly: "Key: Value" lines separated by CRLF, one blank line ends a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "asterisk-sandbox"

# Must match telephony-config/asterisk/manager.conf.
AMI_HOST = "127.0.0.1"
AMI_PORT = 5038
AMI_USER = "engine"
AMI_SECRET = "enginesecret"
AMI_BANNER_PREFIX = "Asterisk Call Manager/"

# Values understood by context [from-congested] in telephony-config/asterisk/carrier-test.conf.
CONGESTED_MODES = ("503", "answer")


class SandboxError(RuntimeError):
    """The sandbox script failed, or Asterisk answered something we did not expect."""


# ---------------------------------------------------------------------------------------------
# Script wrappers
# ---------------------------------------------------------------------------------------------


def _run_script(*args: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            [str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise SandboxError(f"{SCRIPT.name} {' '.join(args)!r} took more than {timeout}s") from err
    if done.returncode != 0:
        raise SandboxError(
            f"{SCRIPT.name} {' '.join(args)!r} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()}"
        )
    return done.stdout


def rx(cmd: str, timeout: float = 30.0) -> str:
    """Run an Asterisk CLI command in the sandbox (`asterisk -rx`) and return its output."""
    if not cmd.strip():
        raise ValueError("rx: empty CLI command")
    return _run_script("rx", cmd, timeout=timeout)


def restart(timeout: float = 120.0) -> None:
    """Stop and start Asterisk (every call is dropped); returns once AMI answers again."""
    _run_script("restart", timeout=timeout)


def crash_restart(timeout: float = 120.0) -> None:
    """Kill Asterisk with SIGKILL (no Hangup events, no Shutdown) and start it again.

    A graceful ``restart`` lets Asterisk hang every channel up over AMI first;
    a crash is the case where the engine must rebuild its view by resync.
    """
    sandbox_dir = Path(
        os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22")
    )
    pid = int((sandbox_dir / "asterisk.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            break
        if state == "Z":  # dead, merely not reaped by its parent yet
            break
        time.sleep(0.05)
    _run_script("start", timeout=timeout)


def status() -> bool:
    """True when the sandbox's Asterisk runs and accepts the engine's AMI login."""
    try:
        _run_script("status", timeout=30.0)
    except SandboxError:
        return False
    return True


def set_congested_mode(mode: str) -> None:
    """Switch congested-trunk's far end: "503" rejects every call, "answer" repairs it.

    Takes effect for the next INVITE, without a restart. `core reload` and restarts reset it to
    the [globals] default, "503".
    """
    if mode not in CONGESTED_MODES:
        raise ValueError(f"congested mode must be one of {CONGESTED_MODES}, got {mode!r}")
    rx(f"dialplan set global CONGESTED_MODE {mode}")
    current = congested_mode()
    if current != mode:
        raise SandboxError(f"CONGESTED_MODE is {current!r} after setting it to {mode!r}")


def congested_mode() -> str:
    """The current value of the CONGESTED_MODE global, read back from the dialplan."""
    # `dialplan show globals` prints lines like "   CONGESTED_MODE=503".
    for line in rx("dialplan show globals").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name == "CONGESTED_MODE":
            return value
    raise SandboxError("CONGESTED_MODE is not defined in the sandbox dialplan ([globals])")


def ami_reachable(host: str = AMI_HOST, port: int = AMI_PORT, timeout: float = 2.0) -> bool:
    """True when something on host:port greets like Asterisk's AMI."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(256)
    except OSError:
        return False
    return banner.decode("ascii", "replace").startswith(AMI_BANNER_PREFIX)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Minimal raw AMI over asyncio streams
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AmiMessage:
    """One AMI message; headers keep their order and repeats (e.g. ChanVariable)."""

    headers: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")


def encode_action(action: str, **headers: str) -> bytes:
    """Serialise an AMI action; header values must not contain CR or LF."""
    lines = [f"Action: {action}"]
    for key, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"AMI header {key!r} contains a line break: {value!r}")
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_message(raw: bytes) -> AmiMessage:
    """Parse one message (without its terminating blank line). Lines without ': ' are kept
    under the empty key, which is how `Command` output and other free text arrive."""
    headers: list[tuple[str, str]] = []
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(": ")
        if sep:
            headers.append((key, value))
        elif line.endswith(":"):
            headers.append((line[:-1], ""))
        else:
            headers.append(("", line))
    return AmiMessage(tuple(headers))


class RawAmi:
    """A bare AMI connection for tests: send actions, read messages, nothing hidden."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: str):
        self.reader = reader
        self.writer = writer
        self.banner = banner

    @classmethod
    async def connect(
        cls, host: str = AMI_HOST, port: int = AMI_PORT, within: float = 5.0
    ) -> RawAmi:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
        line = await asyncio.wait_for(reader.readline(), within)
        banner = line.decode("ascii", "replace").rstrip("\r\n")
        if not banner.startswith(AMI_BANNER_PREFIX):
            writer.close()
            raise SandboxError(f"{host}:{port} is not AMI; it greeted with {banner!r}")
        return cls(reader, writer, banner)

    async def send(self, action: str, **headers: str) -> None:
        self.writer.write(encode_action(action, **headers))
        await self.writer.drain()

    async def read(self, within: float = 10.0) -> AmiMessage:
        """The next message; `within` seconds at most (TimeoutError)."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        return parse_message(raw[:-4])

    async def read_until(
        self, predicate: Callable[[AmiMessage], bool], within: float = 10.0
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        """Read until a message satisfies `predicate`; return it and everything read before it."""
        seen: list[AmiMessage] = []
        deadline = asyncio.get_running_loop().time() + within
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no matching AMI message within {within}s; saw {len(seen)}")
            message = await self.read(remaining)
            if predicate(message):
                return message, seen
            seen.append(message)

    async def login(
        self, username: str = AMI_USER, secret: str = AMI_SECRET, action_id: str = "login"
    ) -> AmiMessage:
        """Send Login and return Asterisk's Response to it (Success or Error)."""
        await self.send("Login", ActionID=action_id, Username=username, Secret=secret)
        response, _ = await self.read_until(lambda m: m.get("ActionID") == action_id)
        return response

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def contact_states() -> dict[str, str]:
    """AOR name -> qualify status (Avail, Unavail, NonQual, Unknown) from `pjsip show contacts`."""
    states: dict[str, str] = {}
    for line in rx("pjsip show contacts").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "Contact:" and "/" in parts[1]:
            states[parts[1].split("/", 1)[0]] = parts[3]
    return states


def wait_qualified(timeout: float = 60.0) -> None:
    """Block until qualify has judged every trunk (after a restart they start
    Unknown/Unavail): the live ones Avail, dead-trunk Unavail."""

    def settled() -> bool:
        states = contact_states()
        return (
            states.get("self-trunk") == "Avail"
            and states.get("congested-trunk") == "Avail"
            and states.get("dead-trunk") == "Unavail"
        )

    if not wait_until(settled, timeout):
        raise SandboxError(f"trunks not qualified after {timeout}s: {contact_states()}")
