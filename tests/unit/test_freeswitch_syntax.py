"""Issue 8 defect 6 (FreeSWITCH side): nothing a caller sends can change the dial string.

``fs_read_originate`` below models how FreeSWITCH 1.10 reads ``originate <dial> <app>``
(the steps in engine/pbx/freeswitch/syntax.py's docstring: space split honouring single
quotes, the ``:_:`` enterprise check on the whole string, the ``{}`` block ended by the
first balancing ``}`` with no escaping, the comma split with ``\\,`` escapes, and the
``|``/``,`` leg split). Every value either is refused with ActionFailed or reads back as
exactly the variables and the one leg the driver meant.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.errors import ActionFailed
from engine.pbx import base
from engine.pbx.freeswitch import syntax
from engine.pbx.freeswitch.driver import FreeSwitchDriver, dial_string
from tests.fakes.fake_esl import FakeFreeSwitch


def _split(text: str, delim: str) -> list[str]:
    """switch_separate_string: quotes group, backslash escapes; then quotes stripped and
    escapes of quote/delim/backslash removed."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            cur.append(nxt if nxt in ("'", '"', delim, "\\") else c + nxt)
            i += 2
            continue
        if c == "'" and (quoted or "'" in text[i + 1 :]):
            quoted = not quoted
        elif c == delim and not quoted:
            parts.append("".join(cur).strip(" "))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur).strip(" "))
    return parts


def _end_paren(text: str) -> int:
    depth = 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def fs_read_originate(command: str) -> tuple[dict[str, str], list[str], str]:
    """(variables, legs, application) as FreeSWITCH would read this originate."""
    verb, _, rest = command.partition(" ")
    assert verb == "originate"
    assert "\n" not in command and "\r" not in command, "a newline starts a second command"
    args = [a for a in _split(rest, " ") if a]
    dial, app = args[0], " ".join(args[1:])
    if ":_:" in dial:
        return {}, dial.split(":_:"), app  # enterprise: several independent legs
    variables: dict[str, str] = {}
    if dial.startswith("{"):
        end = _end_paren(dial)
        assert end > 0, "unbalanced variable block"
        for item in _split(dial[1:end], ","):
            key, _, value = item.partition("=")
            # The '=' split trims each side again.
            variables[key.strip(" ")] = value.strip(" ").replace("\\,", ",")
        dial = dial[end + 1 :]
    legs = [leg for part in dial.split("|") for leg in part.split(",")]
    return variables, legs, app


def originate_command(request: base.OriginateRequest) -> str:
    """The exact line the driver sends (captured from a stub client)."""
    driver = FreeSwitchDriver("fs1", "127.0.0.1")
    sent: list[str] = []

    async def bgapi(command: str, **_: object) -> None:
        sent.append(command)

    driver.client.bgapi = bgapi  # type: ignore[assignment,method-assign]
    asyncio.run(driver.originate(request))
    return sent[0]


def request(
    *, name: str = "", variables: dict[str, str] | None = None, number: str = "61001"
) -> base.OriginateRequest:
    return base.OriginateRequest(
        call_id="c-1",
        target=base.DialTarget("trunk", "carrier", number),
        then=base.Park(),
        caller_id_num="5550001",
        caller_id_name=name,
        variables=variables or {},
    )


INJECTIONS = [
    "x}sofia/gateway/evil/900|",
    "x},origination_uuid=other}sofia/gateway/evil/900 &park()",
    "a|sofia/gateway/evil/900",
    "x:_:sofia/gateway/evil/900",
    "O'Brien",
    "line\nbgapi originate sofia/gateway/evil/900 &park()",
    "^^:a=b:c=d",
    "${system(id)}",
    "x,origination_nested_vars=true",
    "back\\slash",
    'quo"te',
    "{nested}",
    "tab\there",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_an_injection_attempt_is_refused_and_nothing_is_sent(value: str) -> None:
    with pytest.raises(ActionFailed) as err:
        originate_command(request(name=value))
    assert "caller_id_name" in str(err.value) or "origination_caller_id_name" in str(err.value)
    with pytest.raises(ActionFailed):
        originate_command(request(variables={"campaign": value}))


def test_commas_and_spaces_are_carried_exactly() -> None:
    command = originate_command(
        request(name="Smith, John Jr", variables={"note": "a,b,c", "empty_ok": "x y"})
    )
    variables, legs, app = fs_read_originate(command)
    assert legs == ["sofia/gateway/carrier/61001"]
    assert app == "&park()"
    assert variables["origination_caller_id_name"] == "Smith, John Jr"
    assert variables["note"] == "a,b,c"
    assert variables["empty_ok"] == "x y"
    assert variables["origination_uuid"] == "c-1"


SAFE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40
)


@settings(max_examples=400, deadline=None)
@given(name=SAFE_TEXT, value=SAFE_TEXT)
def test_any_value_is_refused_or_reads_back_exactly(name: str, value: str) -> None:
    try:
        command = originate_command(request(name=name, variables={"engine_tag": value}))
    except ActionFailed:
        return
    variables, legs, app = fs_read_originate(command)
    assert legs == ["sofia/gateway/carrier/61001"], command
    assert app == "&park()"
    # FreeSWITCH trims spaces around separated items, so the driver trims them first;
    # otherwise the values read back exactly.
    assert variables["origination_caller_id_name"] == name.strip(" ")
    assert variables["engine_tag"] == value.strip(" ")
    assert variables["origination_uuid"] == "c-1"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (base.DialTarget("trunk", "carrier", "61001|sofia/gateway/evil/900"), "number"),
        (base.DialTarget("trunk", "carrier", "61001,user/1000"), "number"),
        (base.DialTarget("trunk", "carrier", "900@evil.example"), "number"),
        (base.DialTarget("trunk", "carrier/900|x", "61001"), "trunk"),
        (base.DialTarget("trunk", "carrier", ""), "number"),
        (base.DialTarget("endpoint", "1000,sofia/gateway/evil/900"), "endpoint"),
        (base.DialTarget("endpoint", "1000|x"), "endpoint"),
        (base.DialTarget("raw", "{origination_uuid=x}loopback/9"), "raw dial string"),
        (base.DialTarget("raw", "loopback/9|sofia/gateway/evil/900"), "raw dial string"),
        (base.DialTarget("raw", "loopback/9:_:sofia/gateway/evil/900"), "raw dial string"),
        (base.DialTarget("raw", "loopback/9 &bridge(x)"), "raw dial string"),
    ],
)
def test_dial_target_injection_is_refused(target: base.DialTarget, fragment: str) -> None:
    with pytest.raises(ActionFailed, match=fragment):
        dial_string(target)


def test_legitimate_targets_still_dial() -> None:
    assert dial_string(base.DialTarget("trunk", "carrier", "+4930123")) == (
        "sofia/gateway/carrier/+4930123"
    )
    assert dial_string(base.DialTarget("endpoint", "1000@pbx.example")) == "user/1000@pbx.example"
    raw = "sofia/external/67001@127.0.0.1:5080"
    assert dial_string(base.DialTarget("raw", raw)) == raw


@pytest.mark.parametrize("name", ["a,origination_uuid", "a=b", "a}b", "", "1abc", "a b"])
def test_variable_names_are_allow_listed(name: str) -> None:
    with pytest.raises(ActionFailed, match="variable name"):
        originate_command(request(variables={name: "v"}))


def test_a_request_cannot_override_the_engine_variables() -> None:
    with pytest.raises(ActionFailed, match="set by the engine"):
        originate_command(request(variables={"origination_uuid": "someone-else"}))


def test_redirect_flow_and_set_var_are_checked() -> None:
    with pytest.raises(ActionFailed, match="IVR flow"):
        syntax.flow("main,bridge:sofia/gateway/evil/900")
    with pytest.raises(ActionFailed, match="control character"):
        syntax.check_no_control("v\nbgapi originate x", "value")


async def test_the_fake_switch_never_sees_an_injected_originate() -> None:
    async with FakeFreeSwitch() as fs:
        driver = FreeSwitchDriver("fs1", fs.host, fs.port, fs.password)
        await driver.start()
        try:
            assert await driver.wait_up() == base.LinkState.UP
            with pytest.raises(ActionFailed):
                await driver.originate(request(name="x}sofia/gateway/evil/900|"))
            assert not any(c.startswith("bgapi originate") for c in fs.received)
            assert fs.gateway_originates.get("evil") is None
        finally:
            await driver.stop()


class _Writer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("${system(id)}", "expand"), ("a\nsendmsg", "control character"), ("x\x00", "control")],
)
async def test_ivr_set_var_refuses_what_freeswitch_would_expand_or_split(
    value: str, problem: str
) -> None:
    """The set application's argument is expanded by FreeSWITCH: a webhook answer holding
    ${...} must not be evaluated on the switch. Nothing is written."""
    from engine.pbx.freeswitch.outbound import FreeSwitchCallSession

    writer = _Writer()
    session = FreeSwitchCallSession(asyncio.StreamReader(), writer)  # type: ignore[arg-type]
    with pytest.raises(ActionFailed, match=problem):
        await session.set_var("customer", value)
    assert writer.sent == []


async def test_play_refuses_an_application_in_disguise() -> None:
    driver = FreeSwitchDriver("fs1", "127.0.0.1")
    with pytest.raises(ActionFailed, match="would run an application"):
        await driver.play("c-1", "bridge::sofia/gateway/evil/900")
