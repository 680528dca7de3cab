"""Runs IVR flows on a :class:`CallSession` (FastAGI or outbound socket).

Reload keeps the previous good version of a flow whose file became invalid:
an author's typo must never take a live menu down. "Invalid" includes a ``say``
step that cannot be rendered: every static ``say`` is rendered while the flow
loads, so the first caller never waits for the TTS engine and a broken voice
or unwritable prompt directory is reported at file:line before any call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from engine.core import clock
from engine.ivr.loader import FlowError, load_dir
from engine.ivr.model import (
    Answer,
    EnterQueue,
    Flow,
    Gather,
    Hangup,
    Play,
    Say,
    SetVars,
    Step,
)
from engine.ivr.queueing import (
    QueueEntry,
    QueueHandoffFailed,
    QueueRefused,
    QueueRequest,
    QueueTicket,
)
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
    """

    def __init__(
        self,
        directory: Path,
        stream: EventSink | None = None,
        *,
        tts: PromptCache | None = None,
        tts_dir: Path | None = None,
        tts_prefix: str | None = None,
        queues: QueueEntry | None = None,
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
        self.tts = tts
        self.flows: dict[str, Flow] = {}
        self.errors: list[FlowError] = []

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
                    (p.name, p.stat().st_mtime_ns, p.stat().st_size)
                    for p in self._dir.glob("*.yaml")
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
            if isinstance(step, Say) and step.is_static:
                try:
                    self.tts.render_sync(step.text, step.voice)
                except TtsError as err:
                    raise FlowError(
                        flow.source,
                        step.line,
                        f"steps[{index}].say: cannot render with {self.tts.engine} voice "
                        f"{step.voice!r}: {err}",
                    ) from err

    def _commit(self, fresh: dict[str, Flow], errors: list[FlowError]) -> list[FlowError]:
        bad_sources = {e.source for e in errors}
        for name, old in self.flows.items():
            if old.source in bad_sources and name not in fresh:
                fresh[name] = old  # keep the last good version live
        for err in errors:
            log.error("IVR flow rejected; previous version kept", error=str(err))
        self.flows, self.errors = fresh, errors
        return errors

    async def _emit(self, session: CallSession, type_: str, **data: Any) -> None:
        if self._stream is not None:
            event = {"type": type_, "call_id": session.call_id, "ts": clock.now(), **data}
            await self._stream.publish(event)

    async def handle(self, session: CallSession) -> None:
        name = session.variables.get("flow") or session.variables.get("ENGINE_IVR_FLOW") or ""
        flow = self.flows.get(name)
        if flow is None:
            log.error("unknown IVR flow; hanging up", call_id=session.call_id, flow=name)
            await self._emit(session, "IvrFailed", flow=name, reason="unknown flow")
            await session.hangup()
            return
        await self._emit(session, "IvrStarted", flow=flow.name)
        variables: dict[str, str] = {}
        try:
            for step in flow.steps:
                if isinstance(step, EnterQueue):
                    try:
                        ticket = await self._enter_queue(session, flow, step, variables)
                    except QueueHandoffFailed as err:
                        await self._emit(session, "IvrFailed", flow=flow.name, reason=str(err))
                        return
                    if ticket is None:
                        continue  # not queued: the steps after it say so
                    # The ACD has the channel now (parked on its switch): the
                    # session ends without a hangup (docs/ivr.md "queue").
                    await self._emit(
                        session,
                        "IvrFinished",
                        flow=flow.name,
                        reason="queued",
                        queue=ticket.queue,
                        entry_id=ticket.entry_id,
                    )
                    return
                await self._run_step(session, step, variables)
                if isinstance(step, Hangup):
                    break
        except HangupDuringSession:
            await self._emit(session, "IvrFinished", flow=flow.name, reason="caller hung up")
            return
        await self._emit(session, "IvrFinished", flow=flow.name, reason="completed")

    async def _enter_queue(
        self, session: CallSession, flow: Flow, step: EnterQueue, vars_: dict[str, str]
    ) -> QueueTicket | None:
        """The ticket once the ACD has the call; None (and ``queue_error`` set) if refused."""
        intent = step.intent
        if step.choice is not None:
            value = vars_.get(step.choice.var, "")
            intent = step.choice.choices.get(value, step.choice.default)
        reason = ""
        if self._queues is None:
            reason = "no ACD: this engine runs IVR flows without queues"
        elif step.queue is None and intent is None:
            assert step.choice is not None  # the loader requires a queue or an intent
            reason = (
                f"{step.choice.var}={vars_.get(step.choice.var, '')!r} is none of "
                f"{sorted(step.choice.choices)} and the step has no default intent"
            )
        ticket = None
        if not reason:
            assert self._queues is not None
            request = QueueRequest(
                leg=session.call_id,
                flow=flow.name,
                queue=step.queue,
                intent=intent,
                tags=step.tags,
                priority=step.priority,
                features=step.features,
                customer={k: t.format_map(_Missing(vars_)) for k, t in step.customer.items()},
            )
            try:
                ticket = await self._queues.enter(request)
            except QueueRefused as err:
                reason = str(err)
        if ticket is None:
            log.warning(
                "IVR call not queued", call_id=session.call_id, flow=flow.name, reason=reason
            )
            vars_["queue_error"] = reason
            await self._emit(
                session, "IvrQueueRefused", flow=flow.name, line=step.line, reason=reason
            )
        return ticket

    async def _run_step(
        self,
        session: CallSession,
        step: Step,
        vars_: dict[str, str],
    ) -> None:
        if isinstance(step, Answer):
            await session.answer()
        elif isinstance(step, Play):
            await session.play(step.prompt)
        elif isinstance(step, Say):
            text = step.text.format_map(_Missing(vars_)) if not step.is_static else step.text
            # Static text is a cache hit (rendered at load); a template renders
            # here once per distinct value.
            path = await self.tts.render(text, step.voice)
            await session.play(self.tts.prompt_name(path))
        elif isinstance(step, Gather):
            digits = await session.get_digits(
                step.prompt, step.max_digits, step.timeout_s, step.terminators
            )
            vars_[step.into] = digits
            await session.set_var(step.into, digits)
            await self._emit(session, "IvrInput", variable=step.into, digits=digits)
        elif isinstance(step, SetVars):
            for key, template in step.values.items():
                value = template.format_map(_Missing(vars_))
                vars_[key] = value
                await session.set_var(key, value)
        elif isinstance(step, Hangup):
            await session.hangup()


class _Missing(dict[str, str]):
    """``str.format_map`` helper: unknown ``{names}`` render as empty strings."""

    def __missing__(self, key: str) -> str:
        return ""
