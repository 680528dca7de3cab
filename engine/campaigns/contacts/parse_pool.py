"""The contacts parsing pool, whose processes end with the engine.

``ProcessPoolExecutor`` workers never notice that the engine is gone when it dies without
shutting the pool down (SIGKILL, the OOM killer): a worker waits for its next job on the
call queue, and it holds that queue's write end itself (a ``multiprocessing.Queue`` is
pickled with both ends), so the read never ends. Under the forkserver context the worker
also holds the forkserver's "alive" pipe, so the forkserver stays too: every engine that
was killed leaves a pair of processes behind (seen after the SIGKILL drills; systemd's
``KillMode=control-group`` would clean them up, a plain ``kill -9`` does not).

So each worker starts with :func:`_follow_engine`: a daemon thread holds a pidfd of the
engine process (Linux 5.3+; no pid-reuse race) and exits the worker the moment the engine
has exited. Without pidfds it polls the pid every ``POLL_S`` instead.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

POLL_S = 1.0


def new_parse_pool(workers: int) -> ProcessPoolExecutor:
    # forkserver: the engine runs threads (asyncpg, to_thread), and fork() with threads can
    # copy a held lock into the child.
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_follow_engine,
        initargs=(os.getpid(),),
    )


def _follow_engine(engine_pid: int) -> None:
    """In a worker: exit as soon as the engine process ``engine_pid`` has ended."""
    target: Callable[[int], None] = _poll_pid
    arg = engine_pid
    with contextlib.suppress(AttributeError, OSError):
        arg, target = os.pidfd_open(engine_pid), _wait_pidfd
    threading.Thread(target=target, args=(arg,), name="follow-engine", daemon=True).start()


def _wait_pidfd(pidfd: int) -> None:
    # A pidfd becomes readable when its process has exited.
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while not poller.poll():
        pass
    os._exit(0)


def _poll_pid(engine_pid: int) -> None:
    while True:
        time.sleep(POLL_S)
        try:
            os.kill(engine_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            continue
