"""Recording control, encrypted at rest (docs/recordings.md)."""

from __future__ import annotations

from pathlib import Path

from engine.calls.service import CallService
from engine.config import EngineConfig
from engine.recordings.keys import key_ring
from engine.recordings.service import RecordingService
from engine.recordings.store import RecordingIndex
from engine.store.pg.pool import PgStore
from engine.wiring.outbox import Outbox


def build_recordings(
    cfg: EngineConfig, pg: PgStore, data_dir: Path, calls: CallService, outbox: Outbox
) -> RecordingService:
    rec_cfg = cfg.recordings
    recordings = RecordingService(
        rec_cfg,
        keys=key_ring(
            rec_cfg, base=Path(cfg.base_dir), data_dir=data_dir, instance=cfg.engine.instance
        ),
        calls=calls,
        records=outbox.recordings,
        events=outbox.events,
        index=RecordingIndex(pg.pool, timeout_s=cfg.calls.storage_timeout_s),
        store_dir=cfg.resolve(rec_cfg.store_dir),
    )
    # The recordings lane delivers through the service from now on.
    outbox.recordings_box.append(recordings)
    return recordings
