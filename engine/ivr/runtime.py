"""Runs IVR flows on a :class:`CallSession` (FastAGI or outbound socket).

Reload keeps the previous good version of a flow whose file became invalid:
an author's typo must never take a live menu down. "Invalid" includes a ``say``
step that cannot be rendered: every static ``say`` is rendered while the flow
loads, so the first caller never waits for the TTS engine and a broken voice
or unwritable prompt directory is reported at file:line before any call.

A flow runs as a walk over its steps (engine/ivr/graph.py): each step does its
I/O through the session or a port (engine/ivr/ports.py) and returns the next
step's index, or ``None`` to end. Which branch follows an input is decided by
the pure functions of engine/ivr/decide.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from engine.core import clock
from engine.ivr.expr import Value
from engine.ivr.loader import FlowError, check_links, flow_files, load_dir
from engine.ivr.model import (
    Flow,
    Say,
)
from engine.ivr.nlu import KeywordIntentClassifier, LexiconEmotionScorer
from engine.ivr.ports import (
    CallContext,
    CallControl,
    DtmfOnlySpeech,
    EmotionScorer,
    IntentClassifier,
    RunResult,
    SpeechInput,
    WebhookClient,
)
from engine.ivr.queueing import (
    QueueEntry,
)
from engine.ivr.walk import FlowEnd, Ports, Speaker, Walk, kind_of, says_of
from engine.ivr.webhook import HttpWebhookClient
from engine.pbx.base import CallSession, HangupDuringSession
from engine.speech.cache import PromptCache
from engine.speech.espeak import EspeakNg
from engine.speech.settings import TtsSettings
from engine.speech.tts import TtsError
from engine.telemetry.logging import get_logger

log = get_logger("engine.ivr")


class EventSink(Protocol):
    """Where IVR events go: the engine's event outbox (or the stream in tests)."""

    async def publish(self, data: Mapping[str, Any]) -> Any: ...


class IvrRuntime:
    """Loads the flows of ``directory`` and runs them on call sessions.

    TTS: pass a ready ``tts`` cache, or let the runtime build an espeak-ng one
    from ``tts_dir``/``tts_prefix``, falling back to the ``ENGINE_TTS_*``
    environment variables (:class:`~engine.speech.settings.TtsSettings`).
    The other collaborators are ports (engine/ivr/ports.py); each has a default
    that works without the rest of the engine.
    """

    def __init__(
        self,
        directory: Path,
        stream: EventSink | None = None,
        *,
        tts: Speaker | None = None,
        tts_dir: Path | None = None,
        tts_prefix: str | None = None,
        queues: QueueEntry | None = None,
        speech: SpeechInput | None = None,
        intents: IntentClassifier | None = None,
        emotions: EmotionScorer | None = None,
        webhooks: WebhookClient | None = None,
        calls: CallControl | None = None,
        context: CallContext | None = None,
        recordings_dir: str = "",
        secrets: Mapping[str, str] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._dir = directory
        self._stream = stream
        # The ACD, for `queue` steps; its catalog checks them when flows load.
        self._queues = queues
        if tts is None:
            settings = TtsSettings.from_env()
            directory_ = tts_dir if tts_dir is not None else settings.directory
            if tts_prefix is not None:
                prefix = tts_prefix
            elif tts_dir is not None:
                prefix = str(tts_dir)  # same file system as the switch, see settings
            else:
                prefix = settings.prefix
            synth = EspeakNg(settings.espeak_binary, timeout_s=settings.timeout_s)
            tts = PromptCache(synth, directory_, prefix)
        self.tts: Speaker = tts
        self.speech: SpeechInput = speech if speech is not None else DtmfOnlySpeech()
        self.intents: IntentClassifier = intents or KeywordIntentClassifier()
        self.emotions: EmotionScorer = emotions or LexiconEmotionScorer()
        self.webhooks: WebhookClient = webhooks or HttpWebhookClient()
        self._calls = calls
        # A campaign call's contact fields (engine/campaigns/ivr_context.py).
        self._context = context
        # Where the switch writes `record` files, in its own view of the file system.
        self._recordings = recordings_dir or os.environ.get(
            "ENGINE_IVR_RECORDINGS_DIR", "/var/spool/asterisk/engine-ivr"
        )
        self._secrets: Mapping[str, str] = secrets if secrets is not None else os.environ
        self._wall = wall_clock
        self.flows: dict[str, Flow] = {}
        self.errors: list[FlowError] = []

    # ------------------------------------------------------------------ loading

    def load(self) -> list[FlowError]:
        """Parse, validate and pre-render every flow, then swap them in.

        Blocking (it runs the TTS engine for prompts not yet cached): call it
        before serving calls, or use :meth:`reload` from the event loop.
        """
        if not self._dir.is_dir():
            log.warning("IVR directory missing; no flows loaded", path=str(self._dir))
            return []
        return self._commit(*self._prepare())

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        try:
            return tuple(
                sorted(
                    (p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in flow_files(self._dir)
                )
            )
        except OSError:
            return ()

    async def watch(self, interval_s: float, closing: Callable[[], bool]) -> None:
        """Reload whenever a flow file is added, changed or removed.

        Polling, not inotify: it works the same on every file system (NFS,
        bind mounts, containers) and a flow directory holds a handful of files.
        """
        seen = await asyncio.to_thread(self._signature)
        while not closing():
            await asyncio.sleep(interval_s)
            now = await asyncio.to_thread(self._signature)
            if now != seen:
                seen = now
                errors = await self.reload()
                log.info("IVR flows reloaded", flows=sorted(self.flows), errors=len(errors))

    async def reload(self) -> list[FlowError]:
        """:meth:`load` with the parsing and rendering in a worker thread."""
        if not self._dir.is_dir():
            log.warning("IVR directory missing; no flows loaded", path=str(self._dir))
            return []
        fresh, errors = await asyncio.to_thread(self._prepare)
        return self._commit(fresh, errors)

    def _prepare(self) -> tuple[dict[str, Flow], list[FlowError]]:
        # Thread-safe: reads files and renders prompts, touches no runtime state.
        try:
            voices: frozenset[str] | None = self.tts.voices()
        except TtsError as err:
            # Flows without `say` still load; each `say` then fails to render
            # below with this reason at its own file:line.
            log.warning("TTS voices unavailable; say steps cannot render", error=str(err))
            voices = None
        catalog = self._queues.catalog() if self._queues is not None else None
        fresh, errors = load_dir(self._dir, voices, catalog)
        for name, flow in list(fresh.items()):
            try:
                self._prerender(flow)
            except FlowError as err:
                errors.append(err)
                del fresh[name]
        return fresh, errors

    def _prerender(self, flow: Flow) -> None:
        for index, step in enumerate(flow.steps):
            for say in says_of(step):
                if not say.is_static:
                    continue
                try:
                    self.tts.render_sync(say.text, say.voice)
                except TtsError as err:
                    kind = "say" if isinstance(step, Say) else f"{kind_of(step)}.say"
                    raise FlowError(
                        flow.source,
                        step.line,
                        f"steps[{index}].{kind}: cannot render with {self.tts.engine} voice "
                        f"{say.voice!r}: {err}",
                    ) from err

    def _commit(self, fresh: dict[str, Flow], errors: list[FlowError]) -> list[FlowError]:
        bad_sources = {e.source for e in errors}
        for name, old in self.flows.items():
            if old.source in bad_sources and name not in fresh:
                fresh[name] = old  # keep the last good version live
        # A goto to a flow that is not there is refused at the goto's line; the
        # flow that holds it is kept at its last good version, like any error.
        for link_error in check_links(fresh):
            errors.append(link_error)
            for name, flow in list(fresh.items()):
                if flow.source == link_error.source:
                    old_flow = self.flows.get(name)
                    if old_flow is not None and old_flow is not flow:
                        fresh[name] = old_flow
                    else:
                        del fresh[name]
        for err in errors:
            log.error("IVR flow rejected; previous version kept", error=str(err))
        self.flows, self.errors = fresh, errors
        return errors

    # ------------------------------------------------------------------ running

    async def _emit(self, session: CallSession, type_: str, **data: Any) -> None:
        if self._stream is not None:
            event = {"type": type_, "call_id": session.call_id, "ts": clock.now(), **data}
            await self._stream.publish(event)

    async def handle(self, session: CallSession) -> None:
        await self.run(session)

    async def run(
        self,
        session: CallSession,
        flow_name: str | None = None,
        preset: Mapping[str, Value] | None = None,
    ) -> RunResult:
        """Run a flow on ``session``; returns what happened (path, prompts, variables)."""
        name = (
            flow_name
            or session.variables.get("flow")
            or session.variables.get("ENGINE_IVR_FLOW")
            or ""
        )
        flow = self.flows.get(name)
        result = RunResult(flow=name)
        if flow is None:
            log.error("unknown IVR flow; hanging up", call_id=session.call_id, flow=name)
            await self._emit(session, "IvrFailed", flow=name, reason="unknown flow")
            await session.hangup()
            result.end, result.detail = "failed", "unknown flow"
            return result
        await self._emit(session, "IvrStarted", flow=flow.name)
        variables: dict[str, Value] = {
            "call.id": session.call_id,
            "caller.number": session.variables.get("agi_callerid")
            or session.variables.get("Caller-Caller-ID-Number", ""),
            "flow.name": flow.name,
        }
        variables.update(flow.defaults)
        if self._context is not None:
            # After the defaults: a flow's `variables:` may give contact.name a fallback for
            # calls that have no contact (or whose contact has no such field).
            variables.update(self._context.variables_of(session.call_id))
        variables.update(preset or {})
        result.variables = variables

        async def emit(type_: str, **data: Any) -> None:
            await self._emit(session, type_, **data)

        ports = Ports(
            flows=self.flows,
            tts=self.tts,
            speech=self.speech,
            intents=self.intents,
            emotions=self.emotions,
            webhooks=self.webhooks,
            queues=self._queues,
            calls=self._calls,
            recordings_dir=self._recordings,
            secrets=self._secrets,
            wall=self._wall,
            emit=emit,
        )
        run = Walk(ports, session, result)
        try:
            await run.walk(flow)
        except FlowEnd as end:
            result.end, result.detail = end.end, end.detail
        except HangupDuringSession:
            result.end = "caller hung up"
        except Exception as err:
            # A step that failed in a way no branch covers (a call-time TTS render, a
            # switch refusing a command): this call ends, with the step that failed in
            # the log and the IvrFailed event; the engine and other calls go on.
            # Cancellation (shutdown) is a BaseException and is not caught.
            at = result.path[-1] if result.path else run.flow.name
            result.end, result.detail = "failed", f"{at}: {type(err).__name__}: {err}"
            log.exception(
                "IVR step failed; hanging up",
                call_id=session.call_id,
                flow=run.flow.name,
                step=at,
                error=str(err),
            )
            with contextlib.suppress(Exception):
                await session.hangup()
        if result.end == "failed":
            await self._emit(session, "IvrFailed", flow=run.flow.name, reason=result.detail)
        else:
            # A hangup step is a flow that ran to its end: "completed", as before.
            reason = "completed" if result.end == "hangup" else result.end
            await self._emit(
                session,
                "IvrFinished",
                flow=run.flow.name,
                reason=reason,
                # The steps taken (the last 100): what an author debugs a flow with.
                path=result.path[-100:],
                **run.finish_data,
            )
        return result
