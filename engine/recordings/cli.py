"""``python -m engine recordings new-kek ID`` and ``python -m engine recordings rewrap``.

KEK rotation (docs/recordings.md): ``new-kek`` puts a new key on top of the key file (the
current one from the next start or reload of the ring); ``rewrap`` re-wraps every data key in
the index under the current KEK, touching no audio. When it reports nothing skipped, old keys
can be removed from the file. Exit codes: 0 done; 1 done, some keys skipped (no configured KEK
opens them); 2 bad invocation or key file; 4 PostgreSQL failed (run it again: it resumes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError
from engine.recordings.crypto import KekError
from engine.recordings.keys import key_ring, write_new_kek
from engine.recordings.store import RecordingIndex
from engine.store.errors import StoreError
from engine.store.pg.pool import PgStore

DEFAULT_CONFIG = "telephony-config/engine.toml"


def add_parsers(
    sub: Any, pg_store: Callable[[str], PgStore], load_config: Callable[[str], Any]
) -> None:
    """``load_config`` is engine.config's (the entry points' layer, above this one)."""
    rec = sub.add_parser("recordings", help="recording keys: new KEK, re-wrap data keys")
    rsub = rec.add_subparsers(dest="recordings_command", required=True)
    new = rsub.add_parser("new-kek", help="add a new current KEK on top of a key file")
    new.add_argument("key_id")
    new.add_argument("--file", required=True, type=Path, help="the KEK file (mode 0600)")
    new.set_defaults(func=_new_kek)
    rewrap = rsub.add_parser("rewrap", help="re-wrap every data key under the current KEK")
    rewrap.add_argument("--config", default=DEFAULT_CONFIG)
    rewrap.set_defaults(func=lambda args: _rewrap(args, pg_store, load_config))


def _new_kek(args: argparse.Namespace) -> int:
    try:
        write_new_kek(args.file, args.key_id)
    except (KekError, OSError) as err:
        print(f"engine recordings new-kek: {err}", file=sys.stderr)
        return 2
    print(f"{args.file}: {args.key_id} is the current KEK; run 'engine recordings rewrap'")
    return 0


def _rewrap(
    args: argparse.Namespace,
    pg_store: Callable[[str], PgStore],
    load_config: Callable[[str], Any],
) -> int:
    from engine.recordings.service import RecordingService

    try:
        cfg = load_config(args.config)
        ring = key_ring(
            cfg.recordings,
            base=Path(cfg.base_dir),
            data_dir=cfg.resolve(cfg.engine.data_dir),
            instance=cfg.engine.instance,
            create=False,
        )
    except (ConfigError, KekError) as err:
        print(f"engine recordings rewrap: {err}", file=sys.stderr)
        return 2

    async def go() -> tuple[int, int]:
        async with pg_store(args.config) as pg:
            index = RecordingIndex(pg.pool, timeout_s=cfg.calls.storage_timeout_s)
            service = RecordingService(
                cfg.recordings,
                keys=ring,
                calls=_NoCalls(),
                records=_Nowhere(),
                events=_Nowhere(),
                index=index,
                store_dir=cfg.resolve(cfg.recordings.store_dir),
            )
            return await service.rewrap()

    try:
        done, skipped = asyncio.run(go())
    except StoreError as err:
        print(f"engine recordings rewrap: {err}", file=sys.stderr)
        return 4
    print(f"re-wrapped {done} data keys under {ring.current_id}; skipped {skipped}")
    return 1 if skipped else 0


class _Nowhere:
    def put(self, payload: dict[str, Any]) -> None:
        raise RuntimeError("the rewrap tool records nothing")


class _NoCalls:
    async def get(self, call_id: str) -> Any:
        raise RuntimeError("the rewrap tool controls no call")

    def driver(self, name: str) -> Any:
        raise RuntimeError("the rewrap tool controls no switch")
