"""The IVR `queue` step: loader checks at file:line against the configured queues and
intents, the runtime's hand-off (the session ends without a hangup once queued, the
flow goes on when refused), and the ACD side of the hand-off (park first, then the
queue, then an agent is offered the call)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.acd.ivr_entry import IvrQueueEntry
from engine.acd.model import QueueSpec
from engine.calls.model import Call, CallState
from engine.ivr.loader import FlowError, load_dir, parse_flow
from engine.ivr.model import EnterQueue
from engine.ivr.queueing import (
    QueueCatalog,
    QueueHandoffFailed,
    QueueRefused,
    QueueRequest,
    QueueTicket,
)
from engine.ivr.runtime import IvrRuntime
from engine.pbx.base import Park, Then
from tests.unit.acd_fakes import Rig, agent, rig

ROOT = Path(__file__).resolve().parents[2]
CATALOG = QueueCatalog(
    queues=frozenset({"sales", "tech"}),
    intents={"pre_sale": "sales", "tech_support": "tech"},
    feature_sizes=frozenset({2}),
)
MENU = """\
name: menu
steps:
  - answer
  - gather: {prompt: beep, into: choice, max_digits: 1}
  - set: {account: "A-{choice}7"}
  - queue:
      intent:
        from: choice
        map: {"1": pre_sale, "2": tech_support}
      tags: [vip, web]
      priority: 2
      features: [0.5, 0.25]
      customer: {account: "{account}", lang: zh}
  - play: sorry
  - hangup
"""


# ------------------------------------------------------------------ loader


def test_queue_step_parses_with_every_field() -> None:
    flow = parse_flow(MENU, "ivr/menu.yaml", catalog=CATALOG)
    step = flow.steps[3]
    assert isinstance(step, EnterQueue)
    assert step.choice is not None
    assert (step.choice.var, step.choice.choices) == (
        "choice",
        {"1": "pre_sale", "2": "tech_support"},
    )
    assert (step.tags, step.priority, step.features) == (("vip", "web"), 2, (0.5, 0.25))
    assert step.customer == {"account": "{account}", "lang": "zh"}
    assert step.line == 6


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("    queue: salse\n", 4, "steps[0].queue.queue: no queue named 'salse'"),
        ("    queue: salse\n", 4, "did you mean sales?"),
        ("    intent: refund\n", 4, "steps[0].queue.intent: intent 'refund' maps to no queue"),
        (
            "    intent: {from: d, map: {'1': pre_sale, '2': pre_sail}}\n",
            4,
            "steps[0].queue.intent.map.2: intent 'pre_sail' maps to no queue",
        ),
        (
            "    intent: {from: d, map: {'1': pre_sale}, default: nope}\n",
            4,
            "steps[0].queue.intent.default: intent 'nope' maps to no queue",
        ),
        ("    intent: {map: {'1': pre_sale}}\n", 4, "from: <variable>"),
        ("    tags: [vip]\n", 4, "steps[0].queue: expected queue: <name> or intent: <intent>"),
        ("    queue: sales\n    tags: vip\n", 5, "steps[0].queue.tags: expected a list"),
        ("    queue: sales\n    tags: ['a b']\n", 5, "steps[0].queue.tags[0]: expected a tag"),
        (
            "    queue: sales\n    priority: 0\n",
            5,
            "steps[0].queue.priority: expected an integer 1-99",
        ),
        (
            "    queue: sales\n    features: [1, 2, 3]\n",
            5,
            "steps[0].queue.features: 3 numbers, expected 2",
        ),
        (
            "    queue: sales\n    features: [1, x]\n",
            5,
            "steps[0].queue.features[1]: expected a number (got 'x')",
        ),
        (
            "    queue: sales\n    customer: {9lives: x}\n",
            5,
            "steps[0].queue.customer: '9lives' is not a key",
        ),
        (
            "    queue: sales\n    customer: {name: '{na me}'}\n",
            5,
            "steps[0].queue.customer.name: {na me} is not a variable name",
        ),
        ("    queue: sales\n    wait: 5\n", 5, "steps[0].queue: unknown key 'wait'"),
    ],
)
def test_bad_queue_steps_name_file_and_line(body: str, line: int, fragment: str) -> None:
    text = "name: q\nsteps:\n  - queue:\n" + body.replace("    ", "      ")
    with pytest.raises(FlowError) as err:
        parse_flow(text, "ivr/q.yaml", catalog=CATALOG)
    assert str(err.value).startswith(f"ivr/q.yaml:{line}: "), str(err.value)
    assert fragment in str(err.value)


def test_names_are_not_checked_without_a_catalog() -> None:
    flow = parse_flow("name: q\nsteps:\n  - queue: {queue: anything}\n", "q.yaml")
    assert flow.steps[0] == EnterQueue(queue="anything", line=3)


def test_shipped_support_flow_loads_against_the_sample_config() -> None:
    flows, errors = load_dir(ROOT / "ivr", catalog=CATALOG)
    assert errors == []
    step = next(s for s in flows["support-queue"].steps if isinstance(s, EnterQueue))
    assert step.choice is not None and step.choice.choices == {
        "1": "pre_sale",
        "2": "tech_support",
    }
    without_tech = QueueCatalog(frozenset({"sales"}), {"pre_sale": "sales"})
    _, errors = load_dir(ROOT / "ivr", catalog=without_tech)
    # The two shipped flows that send callers to the tech queue are refused.
    assert sorted(Path(e.source).name for e in errors) == [
        "support-queue.yaml",
        "support-triage.yaml",
    ]


# ----------------------------------------------------------------- runtime


class Session:
    """A CallSession that records what the flow asks of the switch."""

    def __init__(self, digits: str, call_id: str = "chan-1") -> None:
        self.calls: list[tuple[str, ...]] = []
        self._digits = digits
        self._id = call_id

    @property
    def call_id(self) -> str:
        return self._id

    @property
    def variables(self) -> Mapping[str, str]:
        return {"flow": "menu"}

    async def answer(self) -> None:
        self.calls.append(("answer",))

    async def play(self, prompt: str) -> None:
        self.calls.append(("play", prompt))

    async def get_digits(
        self, prompt: str, max_digits: int, timeout_s: float, terminators: str = "#"
    ) -> str:
        self.calls.append(("get_digits", prompt))
        return self._digits

    async def get_var(self, name: str) -> str | None:
        return None

    async def set_var(self, name: str, value: str) -> None:
        self.calls.append(("set_var", name, value))

    async def record(self, path: str, max_s: float, silence_s: float = 0) -> None:
        raise AssertionError("not used")

    async def hangup(self) -> None:
        self.calls.append(("hangup",))


@dataclass
class FakeEntry:
    refuse: str = ""
    fail: str = ""
    requests: list[QueueRequest] = field(default_factory=list)

    def catalog(self) -> QueueCatalog:
        return CATALOG

    async def enter(self, request: QueueRequest) -> QueueTicket:
        self.requests.append(request)
        if self.refuse:
            raise QueueRefused(self.refuse)
        if self.fail:
            raise QueueHandoffFailed(self.fail)
        queue = request.queue or CATALOG.intents[request.intent or ""]
        return QueueTicket("call-1", "entry-1", queue)


@dataclass
class Events:
    seen: list[dict[str, object]] = field(default_factory=list)

    async def publish(self, data: Mapping[str, object]) -> None:
        self.seen.append(dict(data))

    def of(self, kind: str) -> list[dict[str, object]]:
        return [e for e in self.seen if e["type"] == kind]


def runtime(tmp_path: Path, entry: object, text: str = MENU) -> tuple[IvrRuntime, Events]:
    flows = tmp_path / "ivr"
    flows.mkdir()
    (flows / "menu.yaml").write_text(text)
    events = Events()
    ivr = IvrRuntime(flows, events, tts_dir=tmp_path / "tts", queues=entry)  # type: ignore[arg-type]
    assert ivr.load() == []
    return ivr, events


async def test_queued_call_leaves_the_ivr_without_a_hangup(tmp_path: Path) -> None:
    entry = FakeEntry()
    ivr, events = runtime(tmp_path, entry)
    session = Session("2")
    await ivr.handle(session)
    (req,) = entry.requests
    assert req == QueueRequest(
        leg="chan-1",
        flow="menu",
        queue=None,
        intent="tech_support",
        tags=("vip", "web"),
        priority=2,
        features=(0.5, 0.25),
        customer={"account": "A-27", "lang": "zh"},
    )
    # Nothing after the queue step ran: no "sorry", and above all no hangup.
    assert ("hangup",) not in session.calls
    assert ("play", "sorry") not in session.calls
    (done,) = events.of("IvrFinished")
    assert (done["reason"], done["queue"], done["entry_id"]) == ("queued", "tech", "entry-1")


async def test_a_choice_that_maps_to_no_intent_runs_the_steps_after_the_queue(
    tmp_path: Path,
) -> None:
    entry = FakeEntry()
    ivr, events = runtime(tmp_path, entry)
    session = Session("7")
    await ivr.handle(session)
    assert entry.requests == []  # nothing asked of the ACD
    assert session.calls[-2:] == [("play", "sorry"), ("hangup",)]
    (refused,) = events.of("IvrQueueRefused")
    assert "choice='7' is none of ['1', '2']" in str(refused["reason"])
    assert events.of("IvrFinished")[0]["reason"] == "completed"


async def test_an_acd_refusal_runs_the_steps_after_the_queue(tmp_path: Path) -> None:
    entry = FakeEntry(refuse="call chan-1 is ringing, not answered")
    ivr, events = runtime(tmp_path, entry)
    session = Session("1")
    await ivr.handle(session)
    assert len(entry.requests) == 1
    assert session.calls[-2:] == [("play", "sorry"), ("hangup",)]
    assert events.of("IvrQueueRefused")[0]["reason"] == "call chan-1 is ringing, not answered"


async def test_a_failed_handoff_ends_the_flow_with_ivr_failed(tmp_path: Path) -> None:
    entry = FakeEntry(fail="call-1 not queued: caller gone")
    ivr, events = runtime(tmp_path, entry)
    session = Session("1")
    await ivr.handle(session)
    assert ("play", "sorry") not in session.calls
    assert events.of("IvrFailed")[0]["reason"] == "call-1 not queued: caller gone"
    assert events.of("IvrFinished") == []


async def test_without_an_acd_the_queue_step_is_refused(tmp_path: Path) -> None:
    ivr, events = runtime(tmp_path, None)
    session = Session("1")
    await ivr.handle(session)
    assert session.calls[-2:] == [("play", "sorry"), ("hangup",)]
    assert "no ACD" in str(events.of("IvrQueueRefused")[0]["reason"])


async def test_a_bad_reload_keeps_the_queue_flow_that_was_good(tmp_path: Path) -> None:
    entry = FakeEntry()
    ivr, _ = runtime(tmp_path, entry)
    (tmp_path / "ivr" / "menu.yaml").write_text(MENU.replace("tech_support", "tech_sup"))
    errors = await ivr.reload()
    assert [e.line for e in errors] == [9]
    assert "intent 'tech_sup' maps to no queue" in str(errors[0])
    step = ivr.flows["menu"].steps[3]
    assert isinstance(step, EnterQueue) and step.choice is not None
    assert step.choice.choices["2"] == "tech_support"


# ------------------------------------------------- the ACD side of the hand-off


SALES = QueueSpec("sales", skills={"sales": 5}, ring_timeout_s=10)
TECH = QueueSpec("tech", skills={"tech": 5}, ring_timeout_s=10)


@dataclass
class Tracked:
    """CallService's part in the hand-off, over the ACD rig's calls and switch."""

    r: Rig
    redirects: list[tuple[str, Then]] = field(default_factory=list)
    # Inbound channels on the switch that CallService does not track (yet).
    inbound: dict[str, Call] = field(default_factory=dict)

    def tracked(self) -> list[Call]:
        return list(self.r.calls.calls.values())

    async def redirect(self, call_id: str, then: Then) -> Call:
        self.redirects.append((call_id, then))
        await self.r.switch.redirect(call_id, then)
        return self.r.calls.calls[call_id]

    async def hangup(self, call_id: str, cause: int = 16) -> Call:
        return await self.r.calls.hangup(call_id, cause)

    async def adopt_inbound(self, leg: str) -> Call | None:
        call = self.inbound.pop(leg, None)
        if call is not None:
            self.r.calls.calls[leg] = call
            self.r.switch.live.add(leg)
        return call


def acd_rig() -> tuple[Rig, Tracked, IvrQueueEntry]:
    r = rig(
        [agent("sam", {"sales": 9}), agent("tina", {"tech": 7})],
        [SALES, TECH],
        intents={"pre_sale": "sales", "tech_support": "tech"},
    )
    for agent_id in ("sam", "tina"):
        r.acd.login(agent_id)
        r.acd.ready(agent_id)
    tracked = Tracked(r)
    return r, tracked, IvrQueueEntry(r.acd, tracked)


async def test_ivr_caller_is_parked_queued_by_intent_and_offered_to_an_agent(
    tmp_path: Path,
) -> None:
    r, tracked, entry = acd_rig()
    assert entry.catalog() == QueueCatalog(
        frozenset({"sales", "tech"}), {"pre_sale": "sales", "tech_support": "tech"}, frozenset()
    )
    r.calls.caller("c1")
    text = MENU.replace("      features: [0.5, 0.25]\n", "")
    ivr, events = runtime(tmp_path, entry, text)
    session = Session("2", call_id="c1")
    await ivr.handle(session)
    await r.settle()
    assert ("hangup",) not in session.calls
    # Parked first (the IVR session may only end after), then hold music.
    assert tracked.redirects == [("c1", Park())]
    order = [a[:2] for a in r.switch.actions if a[0] in ("redirect", "moh_start")]
    assert order == [("redirect", "c1"), ("moh_start", "c1")]
    (entered,) = r.events.of("QueueCallEntered")
    assert (entered["call_id"], entered["queue"], entered["intent"]) == (
        "c1",
        "tech",
        "tech_support",
    )
    assert (entered["tags"], entered["priority"]) == (["vip", "web"], 2)
    (offered,) = r.events.of("QueueCallOffered")
    assert (offered["agent_id"], offered["queue"]) == ("tina", "tech")
    assert offered["customer"] == {"account": "A-27", "lang": "zh"}
    assert events.of("IvrFinished")[0]["reason"] == "queued"


async def test_refusals_leave_the_call_in_the_ivr_untouched() -> None:
    r, tracked, entry = acd_rig()
    r.calls.caller("ringing", CallState.RINGING)
    r.calls.caller("c2")
    base = QueueRequest(leg="c2", flow="f", queue=None, intent="pre_sale")
    cases = [
        (QueueRequest(leg="nobody", flow="f", queue="sales", intent=None), "not live on any"),
        (QueueRequest(leg="ringing", flow="f", queue="sales", intent=None), "not answered"),
        (
            QueueRequest(leg="c2", flow="f", queue=None, intent="pre_sale", customer={"n": "${x}"}),
            "customer",
        ),
        (QueueRequest(leg="c2", flow="f", queue=None, intent="refund"), "maps to no queue"),
        (QueueRequest(leg="c2", flow="f", queue="nope", intent=None), "no queue named 'nope'"),
    ]
    for request, fragment in cases:
        with pytest.raises(QueueRefused) as err:
            await entry.enter(request)
        assert fragment in str(err.value), (request, str(err.value))
    assert tracked.redirects == []
    assert r.events.of("QueueCallEntered") == []
    ticket = await entry.enter(base)
    assert ticket.queue == "sales" and tracked.redirects == [("c2", Park())]


async def test_a_caller_gone_after_the_park_is_hung_up_not_left_parked() -> None:
    r, tracked, entry = acd_rig()
    r.calls.caller("c3")

    async def gone(call_id: str, then: Then) -> Call:
        tracked.redirects.append((call_id, then))
        # The caller hangs up while the switch parks it.
        r.calls.calls[call_id] = r.calls.calls[call_id].evolve(state=CallState.ENDED)
        return r.calls.calls[call_id]

    tracked.redirect = gone  # type: ignore[method-assign]
    with pytest.raises(QueueHandoffFailed):
        await entry.enter(QueueRequest(leg="c3", flow="f", queue="sales", intent=None))
    assert r.calls.hangups == ["c3"]
    assert r.events.of("QueueCallEntered") == []


async def test_an_inbound_carrier_call_is_adopted_then_queued() -> None:
    """A call that came straight from a carrier into the IVR: not one the engine
    placed, so it is taken in charge (CallService.adopt_inbound) when queued."""
    r, tracked, entry = acd_rig()
    tracked.inbound["in-1"] = Call("in-1", r.switch.name, CallState.ANSWERED, "", {}, 0.0)
    ticket = await entry.enter(QueueRequest(leg="in-1", flow="f", queue=None, intent="pre_sale"))
    await r.settle()
    assert (ticket.call_id, ticket.queue) == ("in-1", "sales")
    assert tracked.redirects == [("in-1", Park())]
    (offered,) = r.events.of("QueueCallOffered")
    assert (offered["call_id"], offered["agent_id"]) == ("in-1", "sam")
