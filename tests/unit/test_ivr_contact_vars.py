"""A campaign contact's custom fields as ``contact.*`` IVR variables (issue 10, build item 2):
the loader accepts ``contact.<word>`` names (and still refuses a typo'd namespace at file:line),
the engine finds the contact of a session's channel in its own state, and the runtime seeds the
flow's variables with them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from engine.calls.model import Call, CallState
from engine.campaigns.flights import Flight
from engine.campaigns.ivr_context import ContactVariables
from engine.ivr.expr import Value
from engine.ivr.loader import FlowError, parse_flow
from engine.ivr.runtime import IvrRuntime


def test_contact_names_load_in_say_set_and_conditions() -> None:
    flow = parse_flow(
        "name: x\nsteps:\n"
        "  - say: 'Hello {contact.name}, about account {contact.account}'\n"
        "  - set: {who: '{contact.name} {contact.phone} {contact.id}'}\n"
        "  - if: contact.balance > 100\n    then: big\n"
        "  - hangup\n"
        "  - id: big\n    hangup:\n",
        "ivr/x.yaml",
    )
    assert flow.name == "x"


@pytest.mark.parametrize(
    ("body", "line", "name"),
    [
        ("  - say: 'hi {contcat.name}'\n", 3, "contcat.name"),
        ("  - set: {a: '{contact.name.first}'}\n", 3, "contact.name.first"),
        ("  - answer\n  - say: 'hi {customer.name}'\n", 4, "customer.name"),
        (
            "  - if: contacts.balance > 1\n    then: x\n  - id: x\n    hangup:\n",
            3,
            "contacts.balance",
        ),
    ],
)
def test_other_namespaces_are_still_unknown(body: str, line: int, name: str) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow("name: x\nsteps:\n" + body, "ivr/x.yaml")
    assert str(info.value).startswith(f"ivr/x.yaml:{line}: "), str(info.value)
    assert f"unknown variable {name!r}" in str(info.value)


def test_a_misspelt_contact_namespace_is_offered_the_right_one() -> None:
    with pytest.raises(FlowError) as info:
        parse_flow("name: x\nsteps:\n  - say: 'hi {contcat.name}'\n", "ivr/x.yaml")
    assert str(info.value).endswith("did you mean contact.name?"), str(info.value)


def _flight(call_id: str, fields: dict[str, object]) -> Flight:
    return Flight(
        attempt_id="a1",
        contact_id=42,
        call_id=call_id,
        phone="+442079460001",
        dialed_number="60001",
        tz="Europe/London",
        fields=dict(fields),
        attempts=0,
        attempts_today=0,
        dialed_at=0.0,
    )


class Calls:
    def __init__(self, *calls: Call) -> None:
        self.calls = list(calls)

    def tracked(self) -> list[Call]:
        return self.calls


class Campaigns:
    def __init__(self, campaign: str, *flights: Flight) -> None:
        self.campaign = campaign
        self.flights = {f.call_id: f for f in flights}

    def flight_of_call(self, call_id: str) -> tuple[str, Flight] | None:
        flight = self.flights.get(call_id)
        return (self.campaign, flight) if flight is not None else None


def _call(call_id: str, *, leg_id: str = "", ended: bool = False) -> Call:
    state = CallState.ENDED if ended else CallState.ANSWERED
    return Call(call_id, "sw", state, "60001", {}, 0.0, leg_id=leg_id)


def test_the_contact_of_a_sessions_channel() -> None:
    fields: dict[str, object] = {
        "name": "Ann } | O'Neil",
        "account": "AC-7",
        "balance": 120.5,
        "vip": True,
        "first name": "skipped: not a variable word",
        "id": "custom id loses to the engine's",
        "note": None,
    }
    ctx = ContactVariables(
        Campaigns("spring", _flight("c1", fields)),
        # Group call: attempt 2's leg is the channel the IVR session knows.
        Calls(_call("c1", leg_id="leg-2")),
    )
    assert ctx.variables_of("leg-2") == {
        "contact.name": "Ann } | O'Neil",
        "contact.account": "AC-7",
        "contact.balance": 120.5,
        "contact.vip": True,
        "contact.note": "",
        "contact.id": "42",
        "contact.phone": "+442079460001",
        "contact.campaign": "spring",
    }
    assert ctx.variables_of("c1")["contact.name"] == "Ann } | O'Neil"
    # Not a campaign call, an unknown channel, an ended call: nothing.
    assert ContactVariables(Campaigns("spring"), Calls(_call("c2"))).variables_of("c2") == {}
    assert ctx.variables_of("other") == {}
    assert ctx.variables_of("") == {}
    ended = ContactVariables(Campaigns("s", _flight("c3", fields)), Calls(_call("c3", ended=True)))
    assert ended.variables_of("c3") == {}


class Session:
    def __init__(self) -> None:
        self.set: list[tuple[str, str]] = []

    @property
    def call_id(self) -> str:
        return "leg-9"

    @property
    def variables(self) -> Mapping[str, str]:
        return {"flow": "msg"}

    async def answer(self) -> None:
        pass

    async def play(self, prompt: str) -> None:
        pass

    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str:
        return ""

    async def get_var(self, name: str) -> str | None:
        return None

    async def set_var(self, name: str, value: str) -> None:
        self.set.append((name, value))

    async def record(self, path: str, max_s: float, silence_s: float = 0) -> None:
        raise AssertionError("not used")

    async def hangup(self) -> None:
        pass


class Context:
    def __init__(self, values: Mapping[str, Value]) -> None:
        self.values = values
        self.asked: list[str] = []

    def variables_of(self, leg: str) -> Mapping[str, Value]:
        self.asked.append(leg)
        return self.values


async def test_the_runtime_seeds_the_flow_with_the_contact(tmp_path: Path) -> None:
    (tmp_path / "msg.yaml").write_text(
        "name: msg\nvariables:\n  contact.title: 'Dear customer'\nsteps:\n"
        "  - set: {greeting: 'Hello {contact.name}, account {contact.account} {contact.title}'}\n"
        "  - if: contact.balance > 100\n    then: owes\n"
        "  - hangup\n"
        "  - id: owes\n    set: {owes: 'yes'}\n"
        "  - hangup\n"
    )
    context = Context({"contact.name": "Ann", "contact.account": "AC-7", "contact.balance": 120})
    runtime = IvrRuntime(tmp_path, tts_dir=tmp_path / "tts", context=context)
    assert runtime.load() == []
    session = Session()
    result = await runtime.run(session)
    assert context.asked == ["leg-9"]
    # contact.title: not a field of this contact, so the flow's own default.
    assert ("greeting", "Hello Ann, account AC-7 Dear customer") in session.set
    assert ("owes", "yes") in session.set
    assert result.variables["contact.name"] == "Ann"


class Transfers:
    """An IVR CallControl that records the transfers it is asked for."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    async def transfer(self, request: object) -> None:
        self.asked.append(request)


async def test_untrusted_fields_reach_no_dial_string_and_one_line_channel_values(
    tmp_path: Path,
) -> None:
    """A contact field is list data, not the flow author's: filled into a `transfer` number it
    is refused by the number check before any dial string (the flow goes on at on_error), and
    into a `set` its channel copy is one line."""
    (tmp_path / "msg.yaml").write_text(
        "name: msg\nsteps:\n"
        "  - set: {note: 'acct {contact.account}'}\n"
        "  - transfer: {number: '{contact.callback}', trunk_group: out, on_error: sorry}\n"
        "  - hangup\n"
        "  - id: sorry\n    set: {why: '{transfer_error}'}\n"
        "  - hangup\n"
    )
    context = Context(
        {"contact.account": "7}\nEXEC System(rm)", "contact.callback": "5551234|sofia/gw/x}"}
    )
    calls = Transfers()
    runtime = IvrRuntime(
        tmp_path,
        tts_dir=tmp_path / "tts",
        context=context,
        calls=calls,  # type: ignore[arg-type]
    )
    assert runtime.load() == []
    session = Session()
    await runtime.run(session)
    assert calls.asked == []
    assert ("note", "acct 7} EXEC System(rm)") in session.set
    (why,) = [v for k, v in session.set if k == "why"]
    assert why.startswith("not a number to dial: '5551234|sofia/gw/x}'"), why
