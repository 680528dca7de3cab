"""engine.core.systemd.Notifier: the sd_notify(3) wire format over a real datagram socket."""

from __future__ import annotations

import os
import socket
import uuid

from engine.core.systemd import Notifier


def test_message_is_newline_separated_assignments_in_one_datagram() -> None:
    name = f"@engine-test-{uuid.uuid4().hex}"  # abstract namespace: "@" is a NUL byte
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": name})
        assert notifier.enabled
        assert notifier.notify(READY="1", STATUS="serving")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.notify(READY="1") is False


def test_a_socket_nobody_listens_on_is_reported_not_raised() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": f"/tmp/no-such-dir-{uuid.uuid4().hex}/notify"})
    assert notifier.notify(STOPPING="1") is False


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_pid() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 15.0
    mine = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval_s == 5.0
    other = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(other).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_interval_s is None
