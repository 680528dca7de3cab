"""Issue 8 defect 6, Asterisk side: no input can add AMI headers, change the
dial string, write a dialplan function, smuggle arguments into the engine's
own dialplan applications or be expanded as ``${...}``. Checked at the
driver: a refused value raises ActionFailed and nothing is sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from engine.core.errors import ActionFailed
from engine.pbx.asterisk.ami_codec import Headers, Response, encode_action
from engine.pbx.asterisk.driver import AsteriskDriver, amd_arguments, dial_string
from engine.pbx.base import (
    Amd,
    DialplanTarget,
    DialTarget,
    IvrTarget,
    OriginateRequest,
    Park,
)
from engine.speech.amd import FAST, AmdOverrides


class Sent:
    def __init__(self) -> None:
        self.actions: list[tuple[str, list[tuple[str, str]]]] = []

    async def send_action(
        self,
        action: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        timeout_s: float | None = None,
        action_id: str | None = None,
    ) -> Response:
        # Encode like the real client does: whatever reaches here would be on the wire.
        encode_action(action, action_id or "x", headers)
        self.actions.append((action, list(headers)))
        return Response(Headers.of([("Response", "Success")]))


def driver() -> tuple[AsteriskDriver, Sent]:
    drv = AsteriskDriver("ast1", "127.0.0.1", 1, "u", "s")
    sent = Sent()
    drv.client.send_action = sent.send_action  # type: ignore[method-assign]
    return drv, sent


def request(**kw: Any) -> OriginateRequest:
    values: dict[str, Any] = {
        "call_id": "call-1",
        "target": DialTarget("trunk", "self-trunk", "1001"),
        "then": Park(),
    }
    values.update(kw)
    return OriginateRequest(**values)


BAD_ORIGINATES = [
    # header injection: a newline would start a new header / action
    ({"variables": {"NOTE": "x\r\nAction: Command\r\nCommand: core stop now"}}, "control"),
    ({"caller_id_name": "Bob\r\nVariable: X=1"}, "caller id name"),
    # dialplan function expansion from input
    ({"variables": {"NOTE": "${SHELL(id)}"}}, "'${'"),
    ({"variables": {"NOTE": "$[1+1]"}}, "'${' or '$['"),
    # writing a dialplan function through the variable name
    ({"variables": {"FILE(/etc/passwd)": "x"}}, "never a dialplan function"),
    ({"variables": {"CDR(userfield)": "x"}}, "never a dialplan function"),
    # the caller id parser: a second <number> or a quote moves the number
    ({"caller_id_name": 'x" <666>'}, "caller id name"),
    ({"caller_id_num": "123>,evil"}, "caller id number"),
    # dial string: another channel, options or a URI
    ({"target": DialTarget("trunk", "self-trunk", "1&PJSIP/evil")}, "invalid trunk"),
    ({"target": DialTarget("trunk", "self-trunk", "1,,r")}, "invalid trunk"),
    ({"target": DialTarget("trunk", "self-trunk)", "1")}, "invalid trunk"),
    ({"target": DialTarget("endpoint", "a/sip:evil@x")}, "invalid endpoint"),
    # dialplan names and the IVR flow the AGI URL is built from
    ({"then": DialplanTarget("a,b", "s")}, "dialplan context"),
    ({"then": DialplanTarget("ctx", "s)")}, "dialplan exten"),
    ({"then": IvrTarget("menu?x=1,evil")}, "IVR flow name"),
]


@pytest.mark.parametrize(("changes", "fragment"), BAD_ORIGINATES)
async def test_originate_refuses_injection(changes: dict[str, Any], fragment: str) -> None:
    drv, sent = driver()
    with pytest.raises(ActionFailed) as err:
        await drv.originate(request(**changes))
    assert fragment in str(err.value)
    assert sent.actions == []  # nothing reached the switch


async def test_separators_in_variable_values_are_escaped_not_split() -> None:
    drv, sent = driver()
    tricky = 'a,b "c" (d) [e] \\ f=g & h | i'
    await drv.originate(
        request(
            variables={"NOTE": tricky, "__INHERITED": "1"},
            caller_id_name="Bob",
            caller_id_num="+15",
        )
    )
    ((action, headers),) = sent.actions
    assert action == "Originate"
    assert [v for k, v in headers if k == "Variable"] == [
        'NOTE=a\\,b \\"c\\" \\(d\\) \\[e\\] \\\\ f=g & h | i',
        "__INHERITED=1",
    ]
    assert ("CallerID", '"Bob" <+15>') in headers
    assert ("Channel", "PJSIP/1001@self-trunk") in headers


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda d: d.play("c1", "hello&/etc/passwd"), "prompt"),
        (lambda d: d.play("c1", "hello,,skip"), "prompt"),
        (lambda d: d.play("c1", "../../etc/shadow"), "prompt"),
        (lambda d: d.record_start("c1", "/tmp/x.wav,,rm -rf /"), "recording path"),
        (lambda d: d.set_var("c1", "SHELL(rm)", "x"), "never a dialplan function"),
        (lambda d: d.set_var("c1", "X", "${FILE(/etc/passwd)}"), "'${'"),
        (lambda d: d.set_var("c1", "X", "a\nAction: Logoff"), "control"),
        (lambda d: d.get_var("c1", "SHELL(id)"), "never a dialplan function"),
    ],
)
async def test_other_actions_refuse_injection(call: Any, fragment: str) -> None:
    drv, sent = driver()
    with pytest.raises(ActionFailed) as err:
        await call(drv)
    assert fragment in str(err.value)
    assert sent.actions == []


async def test_safe_values_still_pass() -> None:
    drv, sent = driver()
    await drv.play("c1", "/var/lib/engine/prompts/abc123")
    await drv.record_start("c1", "/var/spool/asterisk/monitor/contract-1.wav")
    await drv.set_var("c1", "ENGINE_X", "42, with commas & (parens)")
    assert [a for a, _ in sent.actions] == ["Setvar", "Redirect", "MixMonitor", "Setvar"]


def test_raw_dial_strings_refuse_whitespace() -> None:
    assert dial_string(DialTarget("raw", "Local/1001@agents")) == "Local/1001@agents"
    with pytest.raises(ActionFailed):
        dial_string(DialTarget("raw", "Local/1@x\r\nAction: Logoff"))


async def test_amd_arguments_ride_in_one_variable_of_digits_and_commas() -> None:
    drv, sent = driver()
    await drv.originate(request(then=Amd()))
    ((_action, headers),) = sent.actions
    assert ("Context", "engine-amd") in headers
    # The switch's own parameters: no variable, so [engine-amd] runs AMD() as before.
    assert not [v for k, v in headers if k == "Variable" and "ENGINE_AMD_ARGS" in v]
    await drv.originate(request(then=Amd(AmdOverrides.of(FAST))))
    await drv.originate(request(then=Amd(AmdOverrides(after_greeting_silence=300))))
    amd_vars = [
        [v for k, v in headers if k == "Variable" and v.startswith("ENGINE_AMD_ARGS=")]
        for _action, headers in sent.actions[1:]
    ]
    # Escaped for the Variable header (Asterisk's splitter), so the value is the string.
    assert amd_vars == [
        ["ENGINE_AMD_ARGS=2500\\,1000\\,200\\,1900\\,100\\,50\\,3\\,512\\,5000"],
        ["ENGINE_AMD_ARGS=\\,\\,300"],
    ]
    assert amd_arguments(Amd(AmdOverrides(after_greeting_silence=300))) == ",,300"


@pytest.mark.parametrize("name", ["ENGINE_AMD_ARGS", "_ENGINE_AMD_ARGS", "__ENGINE_AMD_ARGS"])
async def test_nobody_else_sets_amds_arguments(name: str) -> None:
    drv, sent = driver()
    with pytest.raises(ActionFailed, match="ENGINE_AMD_ARGS is set by the engine"):
        await drv.originate(request(then=Amd(), variables={name: "1,2,3,4,5,6,7,8,9,evil"}))
    assert sent.actions == []


def test_amd_arguments_are_checked_again_before_the_dialplan() -> None:
    # AmdOverrides refuses bad values itself; a bypass of its checks still stops here.
    forged = AmdOverrides(greeting=900)
    object.__setattr__(forged, "greeting", "900,x")
    with pytest.raises(ActionFailed, match="AMD\\(\\) arguments"):
        amd_arguments(Amd(forged))
