"""scripts/demo-acd logs out the agents it logged in, however it ends (done, an error,
Ctrl-C's cancellation), and leaves alone those someone else had logged in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scripts.demo_acd import FORCE_LOGOUT_REASON, agents_ready


class FakeApi:
    """The engine's agent endpoints as the script uses them; ``on_call`` agents answer
    logout with 409 (illegal-agent-transition), as the engine does for a reserved or
    on-call agent."""

    def __init__(self, on_call: frozenset[str] = frozenset()) -> None:
        self.on_call = on_call
        self.posts: list[tuple[str, Any]] = []

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        self.posts.append((path, body))
        agent_id = path.split("/")[2]
        return {"id": agent_id, "state": "paused" if path.endswith("/login") else "available"}

    async def post_status(self, path: str, body: Any = None) -> int:
        self.posts.append((path, body))
        agent_id = path.split("/")[2]
        return 409 if path.endswith("/logout") and agent_id in self.on_call else 200


AGENTS = [
    {"id": "agent1", "state": "logged_out"},
    {"id": "agent2", "state": "available"},  # someone else's session: not ours to end
    {"id": "agent3", "state": "logged_out"},
]


def logouts(api: FakeApi) -> list[str]:
    return [path for path, _ in api.posts if "logout" in path]


async def test_agents_it_logged_in_are_logged_out_when_the_demo_is_done() -> None:
    api = FakeApi()
    async with agents_ready(api, AGENTS) as ours:
        assert ours == ["agent1", "agent3"]
        assert ("/agents/agent1/ready", None) in api.posts
        assert logouts(api) == []
    assert logouts(api) == ["/agents/agent1/logout", "/agents/agent3/logout"]


async def test_agents_are_logged_out_after_an_error() -> None:
    api = FakeApi()
    with pytest.raises(SystemExit):
        async with agents_ready(api, AGENTS):
            raise SystemExit("POST /v1/calls: 503")
    assert logouts(api) == ["/agents/agent1/logout", "/agents/agent3/logout"]


async def test_agents_are_logged_out_on_ctrl_c() -> None:
    # asyncio.run turns Ctrl-C into the main task's cancellation.
    api = FakeApi()
    inside = asyncio.Event()

    async def demo() -> None:
        async with agents_ready(api, AGENTS):
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(demo())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert logouts(api) == ["/agents/agent1/logout", "/agents/agent3/logout"]


async def test_an_agent_still_on_a_call_is_force_logged_out_and_the_rest_logged_out() -> None:
    api = FakeApi(on_call=frozenset({"agent1"}))
    async with agents_ready(api, AGENTS):
        pass
    assert logouts(api) == [
        "/agents/agent1/logout",
        "/agents/agent1/force-logout",
        "/agents/agent3/logout",
    ]
    assert ("/agents/agent1/force-logout", {"reason": FORCE_LOGOUT_REASON}) in api.posts
