"""Data-subject requests: export everything held about one phone number, or erase it
(docs/privacy.md). The database work is in :mod:`engine.privacy.store`; this module adds the
recordings' audio (decrypted through the recordings service, so a tampered file is an error
entry, never bad audio) and the removal of their files."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.campaigns.contacts.parse import parse_phone
from engine.campaigns.contacts.phones import PhoneError
from engine.core.errors import EngineError, InvalidRequest
from engine.privacy.store import EraseResult, StoredRecording, SubjectData, SubjectStore
from engine.privacy.subject import PseudonymKey, Subject, subject
from engine.privacy.zipstream import ZipStream
from engine.recordings.http import recording_view
from engine.recordings.model import Recording
from engine.recordings.service import RecordingService, clock_day
from engine.store.errors import StoreError
from engine.telemetry.logging import get_logger

log = get_logger("engine.privacy")

# What each file of the export holds (also written into its manifest).
FILES = {
    "manifest.json": "this list, the request, the counts and any recording that could not be"
    " exported (audio_errors)",
    "contacts.json": "the number's contact rows in every campaign, custom fields included",
    "attempts.json": "campaign dial attempts to the number",
    "cdrs.json": "call detail records of the number's calls (caller id or destination, or a"
    " campaign attempt's call)",
    "recordings.json": "the recordings index entries of those calls",
    "dnc.json": "the number's do-not-call entries (campaign_id null: the global list)",
    "audio/<recording_id>.wav": "the decrypted audio of each ready recording, when asked for",
}


@dataclass(frozen=True, slots=True)
class Collected:
    who: Subject
    data: SubjectData
    recordings: list[Recording]


@dataclass(frozen=True, slots=True)
class Erased:
    who: Subject
    result: EraseResult
    files_removed: int

    @property
    def complete(self) -> bool:
        return not self.result.recordings_held and not self.result.calls_in_progress

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "phone": self.who.e164,
            "pseudonym": self.who.pseudonym,
            "complete": self.complete,
            "contacts_deleted": r.contacts_deleted,
            "attempts_pseudonymised": r.attempts_pseudonymised,
            "cdrs_pseudonymised": r.cdrs_pseudonymised,
            "webhook_events_scrubbed": r.webhook_events_scrubbed,
            "recordings_shredded": r.recordings_shredded,
            "recording_files_removed": self.files_removed,
            "recordings_held": list(r.recordings_held),
            "calls_in_progress": r.calls_in_progress,
            "dnc_added": r.dnc_added,
        }


class DataSubjectService:
    def __init__(
        self,
        store: SubjectStore,
        key: PseudonymKey,
        *,
        recordings: RecordingService | None,
        default_region: str,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._key = key
        self._recordings = recordings
        self.default_region = default_region
        self._wall = wall

    def subject(self, phone: str, region: str | None) -> Subject:
        """The person a request names; a clear 400 when ``phone`` is not a phone number."""
        try:
            parsed = parse_phone(phone.strip(), region or self.default_region)
        except PhoneError as err:
            raise InvalidRequest(
                f"phone: {err} (got {phone[:64]!r}; numbers without +CC are read in region"
                f" {region or self.default_region})",
                error_id="invalid-phone",
                details={"field": "phone"},
            ) from err
        return subject(parsed.e164, self._key, self.default_region)

    async def collect(self, who: Subject) -> Collected:
        data = await self._store.gather(who)
        recs: list[Recording] = []
        if self._recordings is not None and self._recordings.index is not None and data.call_ids:
            recs = await self._recordings.index.for_calls(data.call_ids)
        return Collected(who, data, recs)

    async def write_export(self, got: Collected, out: ZipStream, *, audio: bool) -> dict[str, Any]:
        """Every file of the export into ``out``; returns the manifest."""
        data = got.data
        await out.add_json("contacts.json", data.contacts)
        await out.add_json("attempts.json", data.attempts)
        await out.add_json("cdrs.json", data.cdrs)
        await out.add_json("recordings.json", [recording_view(r) for r in got.recordings])
        await out.add_json(
            "dnc.json", [{**d, "campaign_id": d["campaign_id"] or None} for d in data.dnc]
        )
        errors: list[dict[str, Any]] = []
        exported: list[str] = []
        if audio and self._recordings is not None:
            for rec in got.recordings:
                if rec.state != "ready":
                    continue
                failure = await self._add_audio(rec.recording_id, out)
                if failure is None:
                    exported.append(rec.recording_id)
                else:
                    errors.append(failure)
        manifest = {
            "phone": got.who.e164,
            "generated_at": datetime.fromtimestamp(self._wall(), UTC).isoformat(),
            "files": FILES,
            "counts": {
                "contacts": len(data.contacts),
                "attempts": len(data.attempts),
                "cdrs": len(data.cdrs),
                "recordings": len(got.recordings),
                "dnc": len(data.dnc),
                "audio": len(exported),
            },
            "audio_included": audio,
            "audio": [f"audio/{rid}.wav" for rid in exported],
            "audio_errors": errors,
        }
        await out.add_json("manifest.json", manifest)
        return manifest

    async def _add_audio(self, recording_id: str, out: ZipStream) -> dict[str, Any] | None:
        assert self._recordings is not None
        try:
            # Authenticates every frame and checks the SHA-256 before the first byte: a
            # tampered, truncated or missing file is an error here, never bad audio.
            sound = await self._recordings.audio(uuid.UUID(recording_id))
        except (EngineError, StoreError) as err:
            error_id = getattr(err, "error_id", "storage-error")
            log.warning(
                "recording left out of an export", recording_id=recording_id, error=str(err)
            )
            return {"recording_id": recording_id, "error_id": error_id, "message": str(err)}
        await out.add_stream(f"audio/{recording_id}.wav", sound.size, sound.chunks())
        return None

    async def erase(self, who: Subject) -> Erased:
        result = await self._store.erase(who)
        removed = 0
        if self._recordings is not None and result.files:
            removed = await asyncio.to_thread(
                remove_files, self._recordings.store_dir, result.files
            )
        log.info(
            "data subject erased",
            pseudonym=who.pseudonym,
            contacts=result.contacts_deleted,
            cdrs=result.cdrs_pseudonymised,
            recordings=result.recordings_shredded,
            held=len(result.recordings_held),
        )
        return Erased(who, result, removed)


def remove_files(store_dir: Path, recordings: list[StoredRecording]) -> int:
    """Remove the encrypted files of shredded recordings (and a ``.key`` or ``.part`` a crash
    left beside one). The path is the row's, or where the service would have put the file
    when the row never got one (a recording in progress at the erase). Returns how many
    files were removed; a file already gone is not an error (a rerun)."""
    removed = 0
    for rec in recordings:
        bases = {store_dir / clock_day(rec.started_at) / f"{rec.recording_id}.enc"}
        if rec.file:
            bases.add(store_dir / rec.file)
        for base in bases:
            for path in (base, base.with_suffix(".key"), base.with_suffix(".part")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed
