"""systemd's notify protocol (``Type=notify``), without libsystemd.

The protocol is documented in sd_notify(3): the service manager passes the path
of a unix *datagram* socket in ``$NOTIFY_SOCKET``, and the service sends it
newline-separated ``KEY=VALUE`` assignments, one datagram per message:

- ``READY=1``: start-up is finished (systemd then runs units ordered after us
  and ``systemctl start`` returns);
- ``STOPPING=1``: shutdown has begun (here: the graceful drain);
- ``STATUS=...``: a line shown by ``systemctl status``;
- ``WATCHDOG=1``: a keep-alive, needed at least every ``$WATCHDOG_USEC``
  microseconds when the unit sets ``WatchdogSec=``.

A path starting with ``@`` is in Linux's abstract namespace: the ``@`` stands
for a leading NUL byte. Nothing here raises: outside systemd (no
``$NOTIFY_SOCKET``) every call is a no-op, and a send that fails is reported
by the return value, never allowed to stop the engine. We chose these thirty
lines over a PyPI package (docs/architecture.md "Dependencies").
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends notify messages to ``$NOTIFY_SOCKET`` (read once, at construction)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.path = env.get("NOTIFY_SOCKET", "")
        self.watchdog_interval_s = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def notify(self, **fields: str) -> bool:
        """Send one message, e.g. ``notify(READY="1", STATUS="serving")``; False if not sent."""
        if not self.path or not fields:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        address = "\0" + self.path[1:] if self.path.startswith("@") else self.path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A datagram send to a unix socket does not block for long; the
                # timeout only guards against a manager that stopped reading.
                sock.settimeout(1.0)
                sock.sendto(message.encode(), address)
        except OSError:
            return False
        return True


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half the watchdog timeout (sd_watchdog_enabled(3) advises pinging at half), or None.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for: a
    child that inherited the environment must not ping on its parent's behalf.
    """
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000
