"""The takeover's order (engine/cluster/takeover.py) under the real lease loop.

One turn of :class:`Ownership` takes the free leases in name order, ``queue:...`` before
``switch:...``, and awaits Redis between them; the recovery task starts at the first lease
taken, so it may rebuild the ACD while the switch is not ours yet. The callers that waited in
the queue are then confirmed against no channel list at all: before the fix, the switch's
takeover never gave the ACD its channel list, and a caller waiting at the kill stayed in the
queue's view, out of the router, never offered (the SIGKILL drill,
tests/integration/test_drill_takeover.py, caught it).

Fakes: Redis (leases and heartbeats, each call a few loop turns, as a round trip) and the
domains (the switch's adoption, the ACD's restore and confirmation), recorded in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from engine.cluster.ownership import Ownership, Timing
from engine.cluster.policy import preferred
from engine.cluster.takeover import Channels, LeaseTakeover
from engine.pbx.base import LiveChannel
from engine.store.redis.locks import LeaseHolder

SWITCH = "fs1"
CALLER = LiveChannel(call_id="caller-1", channel="sofia/caller-1", state="answered")


async def round_trip() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


class FakeLeases:
    """Every lease free (its owner died and its TTL ran out)."""

    owner = "survivor"

    def __init__(self) -> None:
        self.held: dict[str, int] = {}

    async def holders(self, names: Iterable[str]) -> dict[str, LeaseHolder | None]:
        await round_trip()
        return {
            n: (LeaseHolder(self.owner, self.held[n]) if n in self.held else None) for n in names
        }

    async def acquire(self, name: str, ttl_ms: int, last: int | None) -> int | None:
        await round_trip()
        self.held[name] = 7
        return 7

    async def renew(self, name: str, token: int, ttl_ms: int) -> bool:
        await round_trip()
        return True

    async def release(self, name: str, token: int) -> bool:
        return True


class FakeMembers:
    async def beat(self) -> frozenset[str]:
        await round_trip()
        return frozenset({"survivor"})

    async def leave(self) -> None:
        return None


class Domains:
    """The calls' and the ACD's side, as far as order goes: the ACD restored from Redis holds
    a caller on ``SWITCH`` that a channel list of that switch must confirm."""

    def __init__(self, ownership: Ownership) -> None:
        self.ownership = ownership
        self.steps: list[str] = []
        self.restored_unconfirmed: set[str] = set()
        self.confirmed: dict[str, list[str]] = {}

    async def show_fence(self, name: str, token: int) -> bool:
        await round_trip()
        return True

    async def take_switch(self, switch: str) -> None:
        await round_trip()
        self.steps.append(f"take_switch {switch}")

    def drop_switch(self, switch: str) -> None:
        self.steps.append(f"drop_switch {switch}")

    async def owned_channels(self) -> Channels:
        await round_trip()
        return {SWITCH: [CALLER]} if self.ownership.owns_switch(SWITCH) else {}

    async def take_queues(self, live: Channels) -> None:
        await round_trip()  # the restore reads Redis
        self.steps.append(f"take_queues {sorted(live)}")
        self.restored_unconfirmed.add(SWITCH)
        self.confirm(live)

    def confirm(self, live: Channels) -> None:
        self.steps.append(f"confirm {sorted(live)}")
        for switch, channels in live.items():
            if switch in self.restored_unconfirmed:
                self.restored_unconfirmed.discard(switch)
                self.confirmed[switch] = [c.call_id for c in channels]


def wired(leases: list[str]) -> tuple[Ownership, Domains, LeaseTakeover]:
    """The real lease loop over fake Redis leases, its takeover wired to ``Domains``."""
    ownership = Ownership(
        FakeLeases(),  # type: ignore[arg-type]
        FakeMembers(),  # type: ignore[arg-type]
        leases,
        timing=Timing(ttl_s=2.0, margin_s=0.4, timeout_s=0.5),
    )
    domains = Domains(ownership)
    takeover = LeaseTakeover(
        show_fence=domains.show_fence,
        take_switch=domains.take_switch,
        drop_switch=domains.drop_switch,
        take_queues=domains.take_queues,
        confirm_queues=domains.confirm,
        owned_channels=domains.owned_channels,
    )
    return ownership, domains, takeover


async def test_a_switch_taken_after_its_queue_confirms_the_restored_callers() -> None:
    ownership, domains, takeover = wired([f"switch:{SWITCH}", "queue:campq"])
    ownership.on_acquired.append(takeover.acquired)
    ownership.on_lost.append(takeover.lost)

    await ownership.turn()
    await takeover.idle()

    assert set(ownership.held()) == {f"switch:{SWITCH}", "queue:campq"}
    assert f"take_switch {SWITCH}" in domains.steps, domains.steps
    # The ACD rebuilt from Redis saw the switch's channels, whatever the order the leases
    # came in: the waiting caller is confirmed (re-admitted), not left unconfirmed.
    assert domains.restored_unconfirmed == set(), domains.steps
    assert domains.confirmed == {SWITCH: ["caller-1"]}, domains.steps


async def test_a_queue_taken_after_its_switch_is_confirmed_at_once() -> None:
    """The other order (the switch held already, a queue taken later): one confirmation."""
    ownership, domains, takeover = wired([f"switch:{SWITCH}"])
    ownership.on_acquired.append(takeover.acquired)
    await ownership.turn()
    await takeover.idle()
    assert domains.steps == [f"take_switch {SWITCH}"]
    takeover.acquired("queue:campq", 3)
    await takeover.idle()
    assert domains.steps[1:] == [f"take_queues ['{SWITCH}']", f"confirm ['{SWITCH}']"]
    assert domains.confirmed == {SWITCH: ["caller-1"]}


async def test_a_queue_is_pending_from_its_lease_until_it_is_rebuilt() -> None:
    """``pending`` (what engine/wiring/acd.py's ``_serves`` reads): a queue lease taken is not
    served until the ACD is rebuilt; a lost one leaves it at once."""
    pending: set[str] = set()
    gate = asyncio.Event()
    seen: list[set[str]] = []

    async def take_queues(live: Channels) -> None:
        seen.append(set(pending))  # during the rebuild: still pending
        await gate.wait()

    async def no_channels() -> Channels:
        return {}

    async def fence(name: str, token: int) -> bool:
        return True

    async def take_switch(switch: str) -> None:
        return None

    takeover = LeaseTakeover(
        show_fence=fence,
        take_switch=take_switch,
        drop_switch=lambda switch: None,
        take_queues=take_queues,
        confirm_queues=lambda live: None,
        owned_channels=no_channels,
        pending=pending,
    )
    takeover.acquired("queue:campq", 4)
    assert pending == {"queue:campq"}
    await round_trip()
    assert seen == [{"queue:campq"}]
    gate.set()
    await takeover.idle()
    assert pending == set()
    takeover.acquired("queue:other", 5)
    takeover.lost("queue:other", 5, "renewal refused")
    assert pending == set()
    await takeover.idle()


async def test_a_lease_handed_back_is_released_only_after_the_before_release_steps() -> None:
    """The handback race (docs/production.md): the old owner stops acting for the switch at
    once (on_lost), but the lease is released only once what it decided reached the store
    (before_release: the calls registry's flush, engine/wiring/cluster.py), so the next owner's
    adoption reads it."""
    leases = FakeLeases()
    released: list[str] = []

    async def release(name: str, token: int) -> bool:
        released.append(name)
        leases.held.pop(name, None)
        return True

    leases.release = release  # type: ignore[method-assign]

    class TwoLive(FakeMembers):
        async def beat(self) -> frozenset[str]:
            await round_trip()
            return frozenset({"survivor", "preferred"})

    timing = Timing(ttl_s=3.0, margin_s=0.5, handback_after_s=0.0)
    ownership = Ownership(
        leases,  # type: ignore[arg-type]
        FakeMembers(),  # type: ignore[arg-type]
        ["switch:fs1"],
        timing=timing,
        placement=lambda name: "fs1",
    )
    await ownership.turn()
    assert ownership.owns_switch("fs1")
    steps: list[str] = []
    ownership.on_lost.append(lambda name, token, why: steps.append(f"lost {name}"))

    async def flushed(name: str) -> None:
        await round_trip()
        steps.append(f"flushed {name}, owned={ownership.owns(name)}, released={released}")

    ownership.before_release.append(flushed)
    ownership._members = TwoLive()  # type: ignore[assignment]
    # Make the other engine the preferred one, whatever the hash says.
    ownership.placement = lambda name: next(
        k
        for k in (f"k{i}" for i in range(100))
        if preferred(k, {"survivor", "preferred"}) == "preferred"
    )
    await ownership.turn()  # sees "preferred" live
    await ownership.turn()  # hands back
    assert steps == ["lost switch:fs1", "flushed switch:fs1, owned=False, released=[]"]
    assert released == ["switch:fs1"]
