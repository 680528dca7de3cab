"""Print the composition root's order: what ``Engine.start`` pushed on its ``AsyncExitStack``
(run in reverse at stop) and the names of the tasks it created, in creation order.

For a change to ``engine/app.py`` or ``engine/wiring/`` that must not change behaviour: run it
from the base tree and from the changed one and diff the two outputs (docs/architecture.md
"The composition root, in steps")::

    order() { /work/main/.venv/bin/python -m scripts.wiring_order "$1" | grep -E '^(stack|task) '; }
    (cd <base tree> && order cluster) > /tmp/base.txt
    (cd <changed tree> && order cluster) > /tmp/new.txt
    diff /tmp/base.txt /tmp/new.txt

(``-m`` from the tree's root, so that tree's ``engine`` is imported, not the installed one: the
tree used is printed on stderr; the grep drops the engine's own log lines.)

Variants: ``plain`` (one Asterisk, speech on), ``cluster`` (plus ``[cluster] enabled``),
``fs`` (plus a FreeSWITCH switch that is not there: its link is not waited for). Starts the
engine in this process against the fake AMI peer (tests/fakes/carrier_ami.py) and the
PostgreSQL and Redis of ``ENGINE_TEST_PG_DSN`` / ``ENGINE_TEST_REDIS_URL`` (a fresh key prefix
and data directory each run).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import Coroutine
from contextvars import Context
from pathlib import Path
from types import MethodType
from typing import Any

import engine as engine_module
from engine.app import Engine
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config

VARIANTS = {
    "plain": "",
    "cluster": "[cluster]\nenabled = true\nlease_ttl_s = 2\n",
    "fs": (
        '[[switches]]\nkind = "freeswitch"\nname = "fs-1"\nport = 1\npassword = "x"\n'
        'outbound_bind = "127.0.0.1:38084"\n'
    ),
}


def _describe(callback: Any) -> str:
    callback = getattr(callback, "__wrapped__", callback)
    if isinstance(callback, MethodType):
        return f"{type(callback.__self__).__name__}.{callback.__func__.__name__}"
    name = str(getattr(callback, "__qualname__", repr(callback)))
    return name.rsplit("<locals>.", 1)[-1]


async def _run(variant: str) -> list[str]:
    created: list[str] = []
    create_task = asyncio.TaskGroup.create_task

    def recording(
        group: asyncio.TaskGroup,
        coro: Coroutine[Any, Any, Any],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Task[Any]:
        created.append(f"task {name} <- {getattr(coro, '__qualname__', '?')}")
        return create_task(group, coro, name=name, context=context)

    asyncio.TaskGroup.create_task = recording  # type: ignore[method-assign,assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="wiring-order-") as tmp:
            async with CarrierFakeAmi() as ami:
                cfg = engine_config(
                    pg_dsn=os.environ["ENGINE_TEST_PG_DSN"],
                    redis_url=os.environ["ENGINE_TEST_REDIS_URL"],
                    prefix=f"wiring-order:{uuid.uuid4().hex[:8]}:",
                    data_dir=Path(tmp) / "engine",
                    ami_port=ami.port,
                    agi_bind_port=0,
                    extra=VARIANTS[variant],
                )
                engine = Engine(cfg)
                try:
                    await engine.start()
                    stack = [
                        f"stack {'sync' if is_sync else 'async'} {_describe(callback)}"
                        for is_sync, callback in engine._stack._exit_callbacks  # type: ignore[attr-defined]
                    ]
                    tasks = list(created)
                    if variant != "fs":
                        await engine.wait_until_up(30)
                finally:
                    await engine.stop()
    finally:
        asyncio.TaskGroup.create_task = create_task  # type: ignore[method-assign]
    return stack + tasks


def main(argv: list[str]) -> int:
    variant = argv[0] if argv else "plain"
    if variant not in VARIANTS:
        print(f"variant: one of {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    print(f"engine from {Path(engine_module.__file__ or '?').parent}", file=sys.stderr)
    for line in asyncio.run(_run(variant)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
