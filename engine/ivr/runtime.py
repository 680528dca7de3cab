"""Runs IVR flows on a :class:`CallSession` (FastAGI or outbound socket).

Reload keeps the previous good version of a flow whose file became invalid:
an author's typo must never take a live menu down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.core import clock
from engine.ivr.loader import FlowError, load_dir
from engine.ivr.model import Answer, Flow, Gather, Hangup, Play, SetVars
from engine.pbx.base import CallSession, HangupDuringSession
from engine.store.redis.stream import EventStream
from engine.telemetry.logging import get_logger

log = get_logger("engine.ivr")


class IvrRuntime:
    def __init__(self, directory: Path, stream: EventStream | None = None) -> None:
        self._dir = directory
        self._stream = stream
        self.flows: dict[str, Flow] = {}
        self.errors: list[FlowError] = []

    def load(self) -> list[FlowError]:
        if not self._dir.is_dir():
            log.warning("IVR directory missing; no flows loaded", path=str(self._dir))
            return []
        fresh, errors = load_dir(self._dir)
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
                await self._run_step(session, step, variables)
                if isinstance(step, Hangup):
                    break
        except HangupDuringSession:
            await self._emit(session, "IvrFinished", flow=flow.name, reason="caller hung up")
            return
        await self._emit(session, "IvrFinished", flow=flow.name, reason="completed")

    async def _run_step(
        self,
        session: CallSession,
        step: Answer | Play | Gather | SetVars | Hangup,
        vars_: dict[str, str],
    ) -> None:
        if isinstance(step, Answer):
            await session.answer()
        elif isinstance(step, Play):
            await session.play(step.prompt)
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
        else:
            await session.hangup()


class _Missing(dict[str, str]):
    """``str.format_map`` helper: unknown ``{names}`` render as empty strings."""

    def __missing__(self, key: str) -> str:
        return ""
