"""Fault drill 6: an exception in the handling of one event is logged and the
next event is handled (the engine does not lose its consumer)."""

from __future__ import annotations

import structlog

from engine.pbx.base import PbxEvent
from tests.api.conftest import Api
from tests.drill_report import report_drill


async def test_one_failing_event_is_logged_and_the_next_is_handled(api: Api) -> None:
    calls = api.engine.calls
    assert calls is not None
    real_handle = calls.handle
    failed: list[str] = []

    async def handle(event: PbxEvent) -> None:
        if event.type == "Ringing" and not failed:
            failed.append(event.call_id)
            raise RuntimeError("injected fault")
        await real_handle(event)

    calls.handle = handle  # type: ignore[method-assign]
    try:
        with structlog.testing.capture_logs() as logs:
            first = await api.client.originate("1001")
            final = await api.client.wait_state(first["call_id"], "ended")
            # The events after the failed one were handled: answered, then ended.
            assert final["answered_at"] is not None and final["cause"] == 16
            # And the consumer is still alive for the next call.
            second = await api.client.originate("2001")
            assert (await api.client.wait_state(second["call_id"], "ended"))["cause"] == 17
    finally:
        calls.handle = real_handle  # type: ignore[method-assign]
    assert failed == [first["call_id"]]
    errors = [e for e in logs if e["event"] == "event handling failed"]
    assert len(errors) == 1
    assert errors[0]["event_type"] == "Ringing" and errors[0]["log_level"] == "error"
    report_drill(
        "6-event-fault",
        "6: an exception injected into the handling of one event",
        {
            "events_failed": len(failed),
            "errors_logged": len(errors),
            "failed_call_ended_cause": final["cause"],
            "next_call_handled": True,
        },
    )


async def test_a_value_the_switch_would_misread_is_a_400_not_a_502(api: Api) -> None:
    # Found by schemathesis: a control character in a variable reached the
    # driver, which refused it, and the API answered 502 as if the switch had;
    # then, once that was a 400, the schema still called the request valid.
    originates_before = len(api.ami.actions_named("Originate"))
    for variables in (
        {"X": "a\x17b"},
        {"X": "${SHELL(rm -rf /)}"},
        {"X": "$[1+1]"},
        {"_": "a"},  # a prefix with no name (schemathesis ST202)
    ):
        for target in ({"endpoint": "phone-1"}, {"trunk": "self-trunk"}):
            body = {"to": "1001", **target, "variables": variables}
            status, err, _ = await api.client.request("POST", "/calls", json=body)
            assert status == 400, err
            assert "variables" in str(err), err  # names the field
    # "$" alone is fine: only function and expression openers are refused.
    call = await api.client.originate("2001", variables={"X": "cost $5"})
    assert (await api.client.wait_state(call["call_id"], "ended"))["cause"] == 17
    assert len(api.ami.actions_named("Originate")) == originates_before + 1
