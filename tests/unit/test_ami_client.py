"""AmiClient against the fake AMI server (recorded Asterisk 22 bytes)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from engine.core.errors import ActionFailed, ActionTimeout, OutcomeUnknown, PbxUnavailable
from engine.pbx.asterisk.ami_client import (
    MAX_PINGS_UNANSWERED_WHILE_TALKING,
    MAX_REJECTED_RETRIES,
    AmiClient,
    LinkLost,
)
from engine.pbx.asterisk.ami_codec import Action, EventFilter
from engine.pbx.base import LinkState
from tests.fakes.fake_ami import FakeAmiServer
from tests.harness import wait_for


def _client(fake: FakeAmiServer, **kw: object) -> AmiClient:
    opts: dict[str, object] = {
        "action_timeout_s": 1.0,
        "ping_interval_s": 30.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    opts.update(kw)
    secret = str(opts.pop("secret", "enginesecret"))
    return AmiClient("127.0.0.1", fake.port, "engine", secret, **opts)  # type: ignore[arg-type]


async def test_login_then_up_and_events_flow() -> None:
    async with FakeAmiServer() as fake:
        client = _client(fake)
        names: list[str] = []
        client.add_event_listener(lambda ev: names.append(ev.name))
        async with client:
            await client.wait_for_state(LinkState.UP, timeout_s=2)
            assert fake.login_attempts == 1
            login = fake.actions_named("Login")[0]
            assert login.headers.get("Username") == "engine"
        # FullyBooted and SuccessfulAuth follow the login reply in the recording.
        assert names[:2] == ["FullyBooted", "SuccessfulAuth"]
        assert client.state is LinkState.STOPPED


async def test_rejected_login_no_reconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.pbx.asterisk.ami")
    async with FakeAmiServer(reject_login=True) as fake:
        client = _client(fake, secret="wrong-secret-xyz", name="pbx-7")
        states: list[LinkState] = []
        client.add_state_listener(lambda st, _why: states.append(st))
        await client.start()
        await client.wait_for_state(LinkState.REJECTED, timeout_s=2)
        assert "Authentication failed" in client.reason
        await asyncio.sleep(0.5)  # several backoff periods: nothing may happen
        assert fake.connections == 1
        assert client.connect_attempts == 1
        assert client.state is LinkState.REJECTED
        with pytest.raises(PbxUnavailable):
            await client.send_action("Ping")
        assert states == [LinkState.CONNECTING, LinkState.REJECTED]
        # start() again is the only way to retry.
        await client.start()
        await client.wait_for_state(LinkState.REJECTED, timeout_s=2)
        assert fake.connections == 2
        await client.stop()
    assert "wrong-secret-xyz" not in caplog.text
    # Each of the client's lines names its switch as a field, not only in the text.
    ours = [r for r in caplog.records if r.name == "engine.pbx.asterisk.ami"]
    assert ours and {getattr(r, "switch", None) for r in ours} == {"pbx-7"}


async def test_refusal_after_a_restart_is_retried_a_few_times_then_recovers() -> None:
    # Credentials that worked before: a restarting Asterisk may refuse them
    # for a moment, so the client retries at the capped backoff (never faster).
    async with FakeAmiServer() as fake:
        client = _client(fake)
        states: list[LinkState] = []
        client.add_state_listener(lambda st, _why: states.append(st))
        await client.start()
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        fake.reject_login = True
        await fake.drop_all()
        await client.wait_for_state(LinkState.REJECTED, timeout_s=2)
        fake.reject_login = False
        await client.wait_for_state(LinkState.UP, timeout_s=3)
        assert LinkState.REJECTED in states
        assert fake.login_attempts >= 3
        await client.stop()


async def test_refusals_after_a_restart_stop_after_the_retry_budget() -> None:
    async with FakeAmiServer() as fake:
        client = _client(fake)
        await client.start()
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        fake.reject_login = True
        await fake.drop_all()
        await asyncio.sleep(0.2 * (MAX_REJECTED_RETRIES + 3))  # well past the budget
        attempts = fake.login_attempts
        await asyncio.sleep(0.6)
        assert client.state is LinkState.REJECTED
        assert fake.login_attempts == attempts == 1 + 1 + MAX_REJECTED_RETRIES
        await client.stop()


async def test_shutting_down_reply_to_login_is_a_transient_drop() -> None:
    # Even on a first connect: it says nothing about our credentials.
    async with FakeAmiServer(shutting_down=True) as fake:
        client = _client(fake)
        states: list[LinkState] = []
        client.add_state_listener(lambda st, _why: states.append(st))
        await client.start()
        await client.wait_for_state(LinkState.DOWN, timeout_s=2)
        fake.shutting_down = False
        await client.wait_for_state(LinkState.UP, timeout_s=3)
        assert LinkState.REJECTED not in states
        assert fake.login_attempts >= 2
        await client.stop()


async def test_list_action_collects_items() -> None:
    async with FakeAmiServer() as fake, _client(fake) as client:
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        result = await client.send_list_action("QueueSummary")
        assert [e.name for e in result.events] == ["QueueSummary"]
        assert result.events[0].get("Queue") == "sales"
        assert result.complete is not None and result.complete.get("ListItems") == "1"
        assert result.response.headers.get("EventList") == "start"


async def test_error_reply_is_action_failed_not_fatal() -> None:
    async with FakeAmiServer() as fake, _client(fake) as client:
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        with pytest.raises(ActionFailed) as info:
            await client.send_action("Hangup", [("Channel", "PJSIP/nonexistent-0001")])
        assert not isinstance(info.value, OutcomeUnknown)
        assert info.value.response["Message"] == "No such channel"
        # The link survives and the next action works.
        pong = await client.send_action("Ping")
        assert pong.headers.get("Ping") == "Pong"


async def test_reply_without_action_id_does_not_drop_the_link() -> None:
    async with FakeAmiServer() as fake, _client(fake) as client:
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        await fake.push(b"Response: Success\r\nMessage: stray\r\n\r\n")
        pong = await client.send_action("Ping")
        assert pong.ok
        assert fake.connections == 1


async def test_action_timeout() -> None:
    async with FakeAmiServer(swallow={"Getvar"}) as fake, _client(fake) as client:
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        with pytest.raises(ActionTimeout):
            await client.send_action("Getvar", [("Variable", "X")], timeout_s=0.2)
        assert client.state is LinkState.UP


class _StallingAmi(FakeAmiServer):
    """Answers at once, then blocks the event loop for ``stall_s``: the engine's process
    not scheduled on a loaded host, with the reply already in its socket."""

    stall_s = 0.0

    async def _emit(self, writer: asyncio.StreamWriter, action: Action, data: bytes) -> None:
        await super()._emit(writer, action, data)
        if action.name.lower() == "ping":
            time.sleep(self.stall_s)  # noqa: ASYNC251 - the stall is the point: nothing else runs


async def test_a_reply_that_came_in_time_is_not_lost_to_a_stalled_loop() -> None:
    async with _StallingAmi() as fake, _client(fake) as client:
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        fake.stall_s = 0.6
        pong = await client.send_action("Ping", timeout_s=0.2)
        assert pong.ok


async def test_the_ping_watchdog_keeps_a_link_whose_replies_came_while_the_engine_stalled() -> None:
    async with _StallingAmi() as fake:
        fake.stall_s = 0.6
        client = _client(fake, ping_interval_s=0.05, ping_timeout_s=0.2)
        async with client:
            await client.wait_for_state(LinkState.UP, timeout_s=2)
            await wait_for(lambda: len(fake.actions_named("Ping")) >= 3, 10, "three pings")
            assert client.state is LinkState.UP, client.reason
            assert fake.connections == 1


async def test_ping_watchdog_reconnects() -> None:
    async with FakeAmiServer(answer_pings=False) as fake:
        client = _client(fake, ping_interval_s=0.1, ping_timeout_s=0.2)
        states: list[tuple[LinkState, str]] = []
        client.add_state_listener(lambda st, why: states.append((st, why)))
        async with client:
            await client.wait_for_state(LinkState.UP, timeout_s=2)
            await client.wait_for_state(LinkState.DOWN, timeout_s=3)
            assert "Ping" in client.reason
            fake.answer_pings = True
            await client.wait_for_state(LinkState.UP, timeout_s=3)
            assert fake.connections == 2
        assert [s for s, _ in states].count(LinkState.UP) == 2


async def test_unanswered_pings_are_forgiven_while_asterisk_keeps_sending_up_to_a_limit() -> None:
    # A busy Asterisk queues the Pong behind the events it sends: while bytes keep
    # arriving the link stays up, MAX_PINGS_UNANSWERED_WHILE_TALKING pings in a row; one
    # more and it is dropped (a session that streams events but ignores actions).
    event = b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
    async with FakeAmiServer(answer_pings=False) as fake:
        client = _client(fake, ping_interval_s=0.05, ping_timeout_s=0.3)
        states: list[tuple[LinkState, str]] = []
        client.add_state_listener(lambda st, why: states.append((st, why)))
        async with client:
            await client.wait_for_state(LinkState.UP, timeout_s=2)

            async def talk() -> None:
                while True:
                    await fake.push(event)
                    await asyncio.sleep(0.02)

            talker = asyncio.create_task(talk())
            try:
                await client.wait_for_state(LinkState.DOWN, timeout_s=10)
            finally:
                talker.cancel()
            # Read at once: the next connection's pings start after a backoff and a login.
            pings = len(fake.actions_named("Ping"))
            assert "Ping" in client.reason
        downs = [why for st, why in states if st is LinkState.DOWN]
        assert downs and "Ping" in downs[0]
        # The first connection's DOWN came after the forgiven pings plus the fatal one.
        assert pings >= MAX_PINGS_UNANSWERED_WHILE_TALKING + 1, pings


async def test_reconnect_resyncs_before_up_and_gates_other_actions() -> None:
    async with FakeAmiServer() as fake:
        seen: list[tuple[LinkState, int]] = []
        refused: list[BaseException] = []

        async def resync(c: AmiClient) -> None:
            res = await c.send_list_action("CoreShowChannels")
            seen.append((c.state, len(res.events)))
            # An action from outside the resync task is refused while SYNCING.
            outside = asyncio.get_running_loop().create_future()

            def _try() -> None:
                task = asyncio.ensure_future(c.send_action("Ping"))
                task.add_done_callback(lambda t: outside.set_result(t.exception()))

            asyncio.get_running_loop().call_soon(_try, context=__import__("contextvars").Context())
            refused.append(await outside)

        client = _client(fake, resync=resync)
        order: list[LinkState] = []
        client.add_state_listener(lambda st, _w: order.append(st))
        async with client:
            await client.wait_for_state(LinkState.UP, timeout_s=2)
            await fake.drop_all()
            await client.wait_for_state(LinkState.DOWN, timeout_s=2)
            await client.wait_for_state(LinkState.UP, timeout_s=3)
        assert seen == [(LinkState.SYNCING, 0), (LinkState.SYNCING, 0)]
        assert all(isinstance(e, PbxUnavailable) for e in refused) and len(refused) == 2
        assert order == [
            LinkState.CONNECTING,
            LinkState.SYNCING,
            LinkState.UP,
            LinkState.DOWN,
            LinkState.CONNECTING,
            LinkState.SYNCING,
            LinkState.UP,
            LinkState.STOPPED,
        ]
        # CoreShowChannels ran on each connection before anything else.
        names = [a.name for a in fake.received]
        assert names == ["Login", "CoreShowChannels", "Login", "CoreShowChannels"]


async def test_failed_resync_drops_and_retries() -> None:
    calls = 0

    async def resync(c: AmiClient) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    async with FakeAmiServer() as fake, _client(fake, resync=resync) as client:
        await client.wait_for_state(LinkState.UP, timeout_s=3)
        assert calls == 2 and fake.connections == 2


async def test_pending_originate_fails_on_disconnect_and_is_never_resent() -> None:
    async with FakeAmiServer("originate-busy.ami", drop_on={"Originate"}) as fake:
        async with _client(fake) as client:
            await client.wait_for_state(LinkState.UP, timeout_s=2)
            with pytest.raises(LinkLost) as info:
                await client.send_action(
                    "Originate",
                    [("Channel", "PJSIP/2001@self-trunk"), ("Async", "true"), ("ChannelId", "c1")],
                )
            # Written, reply lost: outcome unknown (NOT PbxUnavailable, which means "not sent").
            assert isinstance(info.value, OutcomeUnknown)
            assert not isinstance(info.value, PbxUnavailable)
            await client.wait_for_state(LinkState.UP, timeout_s=3)
            await client.send_action("Ping")
            await asyncio.sleep(0.2)
        assert fake.connections == 2
        assert len(fake.actions_named("Originate")) == 1


async def test_action_while_down_is_not_sent() -> None:
    async with FakeAmiServer() as fake:
        client = _client(fake)
        with pytest.raises(PbxUnavailable):
            await client.send_action("Originate", [("Channel", "PJSIP/1@t")])
        assert fake.received == []


async def test_connect_refused_backs_off_and_recovers() -> None:
    fake = FakeAmiServer()
    await fake.start()
    port = fake.port
    await fake.stop()
    client = AmiClient(
        "127.0.0.1", port, "engine", "enginesecret", backoff_initial_s=0.05, backoff_max_s=0.1
    )
    await client.start()
    try:
        await client.wait_for_state(LinkState.DOWN, timeout_s=2)
        await asyncio.sleep(0.3)
        assert client.connect_attempts >= 2
        fake2 = FakeAmiServer(port=port)
        await fake2.start()
        try:
            await client.wait_for_state(LinkState.UP, timeout_s=3)
        finally:
            await client.stop()
            await fake2.stop()
    finally:
        await client.stop()


def test_backoff_is_capped_with_jitter() -> None:
    client = AmiClient("h", 1, "u", "s", backoff_initial_s=0.5, backoff_max_s=8.0)
    delays = [client._backoff(a) for a in range(12)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert delays[0] <= 0.5 and delays[-1] >= 4.0
    assert len({round(client._backoff(10), 6) for _ in range(20)}) > 1


async def test_events_async_iterator() -> None:
    async with FakeAmiServer("originate-deadtrunk.ami") as fake, _client(fake) as client:
        got: list[str] = []

        async def consume() -> None:
            async for ev in client.events():
                got.append(ev.name)
                if ev.name == "OriginateResponse":
                    return

        task = asyncio.create_task(consume())
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        await client.send_action("Originate", [("Channel", "PJSIP/1001@dead-trunk")])
        await asyncio.wait_for(task, 2)
        assert got[-1] == "OriginateResponse"


# ----------------------------------------------------------------------------- event filters

FILTERS = (EventFilter("Hangup"), EventFilter("VarSet", "Variable", "AMDSTATUS"))


async def test_event_filters_are_added_after_login_and_before_the_resync() -> None:
    async def resync(c: AmiClient) -> None:
        await c.send_list_action("CoreShowChannels")

    async with (
        FakeAmiServer() as fake,
        _client(fake, resync=resync, event_filters=FILTERS) as client,
    ):
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        names = [a.name for a in fake.received]
        assert names[:4] == ["Login", "Filter", "Filter", "CoreShowChannels"]
        criteria = [a.headers.get("MatchCriteria") for a in fake.actions_named("Filter")]
        assert criteria == [f.criteria() for f in FILTERS]
        assert fake.actions_named("Filter")[1].headers.get("Filter") == "AMDSTATUS"
        assert client.filters_enabled
        assert fake.connections == 1


async def test_no_filter_action_without_event_filters() -> None:
    async with FakeAmiServer() as fake, _client(fake) as client:
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        assert fake.actions_named("Filter") == []


async def test_refused_filter_reconnects_once_without_filters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A session holding only some filters would lose events the driver needs,
    # and AMI cannot remove a filter: start a clean session without any.
    async with (
        FakeAmiServer(refuse_filters=True) as fake,
        _client(fake, event_filters=FILTERS) as client,
    ):
        await client.wait_for_state(LinkState.UP, timeout_s=2)
        assert not client.filters_enabled
        assert fake.connections == 2
        names = [a.name for a in fake.received]
        second_login = len(names) - 1 - names[::-1].index("Login")
        assert "Filter" not in names[second_login:]
        assert names.count("Login") == 2
    assert "refused event filter" in caplog.text
