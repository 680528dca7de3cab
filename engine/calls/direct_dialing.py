"""Calls placed straight to an endpoint: one leg, one originate, on the
switch asked for or the least loaded one that is up. (A plain ``trunk`` goes
through ``GroupDialing``, so the trunk's limits apply.)

The originate is never re-sent. ``PbxUnavailable`` means nothing was written
to the switch: the call ends at once and the Idempotency-Key is released.
``OutcomeUnknown`` means it may have been placed: the call is marked and the
resync or an unknown-outcome probe decides (``calls.recovery``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine.calls.commands import OriginateCommand
from engine.calls.committer import StateCommitter
from engine.calls.errors import (
    SwitchActionFailed,
    SwitchNotOwned,
    SwitchUnavailable,
    UnsafeCallValue,
)
from engine.calls.idempotency import OriginateKeys
from engine.calls.live import LiveCalls
from engine.calls.lookup import CallLookup
from engine.calls.model import Call, CallState, dial_target, then_to_dict
from engine.calls.ownership import SwitchGate
from engine.calls.switches import named_driver
from engine.core import clock
from engine.core.errors import ActionFailed, OutcomeUnknown, PbxUnavailable, UnsafeValue
from engine.core.ids import new_call_id
from engine.pbx.base import LinkState, OriginateRequest, PbxDriver
from engine.telemetry.logging import get_logger
from engine.telemetry.metrics import Metrics

log = get_logger("engine.calls")


class DirectDialing:
    def __init__(
        self,
        live: LiveCalls,
        committer: StateCommitter,
        *,
        drivers: Mapping[str, PbxDriver],
        lookup: CallLookup,
        keys: OriginateKeys,
        metrics: Metrics,
        now: Callable[[], float],
        gate: SwitchGate,
    ) -> None:
        self._live = live
        self._commit = committer
        self._drivers = drivers
        self._gate = gate
        self._lookup = lookup
        self._keys = keys
        self._metrics = metrics
        self._now = now

    def pick_switch(self, wanted: str | None) -> PbxDriver:
        if wanted is not None:
            driver = named_driver(self._drivers, wanted)
            if not self._gate.owns_switch(driver.name):
                raise SwitchNotOwned(
                    f"switch {driver.name!r} is owned by another engine (lease "
                    f"switch:{driver.name}); send the request to its owner or retry",
                    details={
                        "switch": driver.name,
                        "lease": f"switch:{driver.name}",
                        "retry_after_s": SwitchNotOwned.retry_after_s,
                    },
                )
            return driver
        owned = [d for d in self._drivers.values() if self._gate.owns_switch(d.name)]
        if not owned:
            raise SwitchNotOwned(
                "this engine owns no switch link at the moment (another engine does)",
                details={"retry_after_s": SwitchNotOwned.retry_after_s},
            )
        up = [d for d in owned if d.state is LinkState.UP]
        if not up:
            raise SwitchUnavailable(
                "no switch link is up",
                details={"switches": {n: d.state.value for n, d in self._drivers.items()}},
            )

        # Least loaded first; the name breaks ties so the choice is stable.
        def load(d: PbxDriver) -> tuple[int, str]:
            return (self._live.on_switch(d.name), d.name)

        return min(up, key=load)

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None
    ) -> tuple[Call, bool]:
        driver = self.pick_switch(cmd.switch)
        call_id = cmd.call_id or new_call_id()
        fingerprint = cmd.fingerprint()

        call = Call(
            call_id=call_id,
            switch=driver.name,
            state=CallState.CREATED,
            to=cmd.to,
            then=then_to_dict(cmd.then),
            created_at=self._now(),
            trunk=cmd.trunk,
            endpoint=cmd.endpoint,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            variables=dict(cmd.variables),
        )
        if idempotency_key:
            previous = await self._keys.claim(idempotency_key, call, fingerprint)
            if previous is not None:
                return previous, False
        self._metrics.calls_originated.labels(driver.name).inc()
        request = OriginateRequest(
            call_id=call_id,
            target=dial_target(call),
            then=cmd.then,
            caller_id_num=cmd.caller_id_num,
            caller_id_name=cmd.caller_id_name,
            timeout_s=cmd.timeout_s,
            variables=dict(cmd.variables),
        )
        # Tracked, mirrored and "created" accepted before the originate is
        # written, so its first event always finds the call and comes after.
        self._live.put(call)
        if not idempotency_key:
            self._commit.save(call)
        self._commit.publish_state(call, None)
        started = clock.monotonic()
        try:
            await driver.originate(request)
        except OutcomeUnknown as err:
            # Written but unacknowledged: never re-send. The resync after the
            # reconnect (or the channel's own events) decides what happened.
            log.warning("originate outcome unknown", call_id=call_id, error=str(err))
            await self._commit.update(call_id, lambda c: c.evolve(outcome_unknown=True))
        except PbxUnavailable as err:
            await self._end_rejected(call_id, f"not placed: switch unavailable ({err})")
            if idempotency_key:
                # Nothing reached the switch, so a retry with the same key may place it.
                await self._keys.release(idempotency_key)
            raise SwitchUnavailable(
                f"switch {driver.name!r} is not available: {err}",
                details={"switch": driver.name, "state": driver.state.value, "call_id": call_id},
            ) from err
        except UnsafeValue as err:
            await self._end_rejected(call_id, f"not placed: {err}")
            if idempotency_key:
                await self._keys.release(idempotency_key)
            raise UnsafeCallValue(
                f"not placed: {err}", details={"switch": driver.name, "call_id": call_id}
            ) from err
        except ActionFailed as err:
            await self._end_rejected(call_id, f"switch refused the originate: {err}")
            raise SwitchActionFailed(
                f"switch {driver.name!r} refused the originate: {err}",
                details={"switch": driver.name, "call_id": call_id, "response": err.response},
            ) from err
        else:
            self._metrics.originate_latency.labels(driver.name).observe(clock.monotonic() - started)
            await self._commit.feed(call_id, "originate_accepted")
        return await self._lookup.get(call_id), True

    async def _end_rejected(self, call_id: str, text: str) -> None:
        await self._commit.feed(call_id, "originate_rejected", cause_text=text)
