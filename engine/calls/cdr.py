"""Writing CDRs without losing them.

A CDR is written once, when a leg ends. PostgreSQL can be briefly away
(failover, restart); the writer retries with backoff and, if the database
stays away, appends the row to a local spool file (JSON lines) that is
replayed on the next start. Inserts are idempotent on (call_id, attempt), so
a replay after a partial failure never duplicates a row.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.calls.model import Call
from engine.core.clock import to_datetime
from engine.store.errors import StoreError
from engine.store.pg.cdr import CdrRepository, CdrRow
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics

log = get_logger("engine.calls.cdr")

RETRY_DELAYS_S = (0.1, 0.5, 2.0)


def cdr_from_call(call: Call) -> CdrRow:
    ended = call.ended_at if call.ended_at is not None else call.created_at
    answered = call.answered_at
    return CdrRow(
        call_id=call.call_id,
        attempt=call.attempt,
        switch=call.switch,
        direction=call.direction,
        channel=call.channel,
        caller_id_num=call.caller_id_num,
        caller_id_name=call.caller_id_name,
        destination=call.to,
        endpoint=call.endpoint,
        trunk=call.trunk,
        started_at=to_datetime(call.created_at),
        answered_at=to_datetime(answered) if answered is not None else None,
        ended_at=to_datetime(ended),
        final_state=call.state.value,
        cause=call.cause,
        cause_text=call.cause_text,
        sip_code=call.sip_code,
        variables=dict(call.variables),
        interrupted=call.interrupted,
    )


def _row_to_json(row: CdrRow) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return {"__dt__": value.isoformat()}
        raise TypeError(type(value).__name__)

    return json.dumps(asdict(row), default=default)


def _row_from_json(text: str) -> CdrRow:
    def hook(obj: dict[str, Any]) -> Any:
        if set(obj) == {"__dt__"}:
            return datetime.fromisoformat(obj["__dt__"])
        return obj

    return CdrRow(**json.loads(text, object_hook=hook))


class CdrWriter:
    def __init__(self, repo: CdrRepository, spool: Path, metrics: Metrics) -> None:
        self._repo = repo
        self._spool = spool
        self._metrics = metrics

    async def write(self, call: Call) -> None:
        row = cdr_from_call(call)
        for delay in (*RETRY_DELAYS_S, None):
            try:
                await self._repo.insert(row)
                return
            except StoreError as err:
                self._metrics.cdr_write_failures.inc()
                if delay is None:
                    log.error(
                        "CDR spooled; database unavailable", call_id=call.call_id, error=str(err)
                    )
                    self._append_spool(row)
                    return
                await asyncio.sleep(delay)

    def _append_spool(self, row: CdrRow) -> None:
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        with self._spool.open("a", encoding="utf-8") as fh:
            fh.write(_row_to_json(row) + "\n")
            fh.flush()

    async def replay_spool(self) -> int:
        """Insert spooled rows; keep the ones that still fail. Returns rows written."""
        if not self._spool.exists():
            return 0
        lines = [ln for ln in self._spool.read_text(encoding="utf-8").splitlines() if ln.strip()]
        kept: list[str] = []
        written = 0
        for line in lines:
            try:
                row = _row_from_json(line)
            except (ValueError, TypeError) as err:
                log.error("unreadable spooled CDR kept aside", error=str(err))
                kept.append(line)
                continue
            try:
                await self._repo.insert(row)
                written += 1
            except StoreError:
                kept.append(line)
        tmp = self._spool.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
        tmp.replace(self._spool)
        return written
