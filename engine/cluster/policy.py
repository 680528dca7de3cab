"""Which engine should own which lease: rendezvous (highest-random-weight) hashing.

Pure: no I/O, no clock. The shell (``ownership.py``) feeds it what it read from Redis.

- Every lease has a *placement key* (by default its own name). Its **preferred owner** is the
  live engine with the highest ``hash(engine, key)``. When an engine joins or leaves, only
  the leases it wins or held move (about 1/N of them), and every engine computes the same
  answer from the same live set without talking to the others.
- An engine **takes** a lease only when it is free and either the engine prefers it or its
  preferred owner is not live (then any engine may: first come, first served, so a dead
  owner's leases are taken as soon as they expire).
- An engine **hands back** a lease it holds but does not prefer only once the preferred owner
  has been live for ``handback_after_s`` (hysteresis: an engine that flaps in and out of the
  live set does not make leases bounce; a restarted engine gets its share back after it has
  proved itself for a while).
- A lease left free for ``grace_s`` is taken by any engine, whoever prefers it: a preferred
  owner that is live but does not take it (a different config, a stuck loop) cannot leave it
  ownerless for longer.
- A lease the store names us as holder of, but that we do not hold (a restart with the same
  instance id), is taken back: acquiring it again keeps its token.
- An engine that holds a lease keeps renewing it otherwise: ownership never moves just
  because the live set changed by one heartbeat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

#: A lease's placement key; leases with the same key go to the same engine.
Placement = Callable[[str], str]


def own_name(name: str) -> str:
    return name


def weight(engine: str, key: str) -> int:
    """The rendezvous weight of ``engine`` for ``key``: stable across processes and hosts."""
    digest = hashlib.blake2b(f"{engine}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred(key: str, live: Iterable[str]) -> str | None:
    """The live engine that should own ``key`` (None when no engine is live)."""
    best: tuple[int, str] | None = None
    for engine in live:
        w = (weight(engine, key), engine)
        if best is None or w > best:
            best = w
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class View:
    """What one engine knows at one moment.

    ``live_for``: each live engine -> seconds it has been seen live without a gap (as this
    engine observed it); ``holders``: each lease -> its current holder, None when free;
    ``held``: the leases this engine holds (its local state: a lease past its local deadline
    is not in it); ``free_for``: each free lease -> seconds it has been seen free.
    """

    me: str
    live_for: Mapping[str, float]
    holders: Mapping[str, str | None]
    held: frozenset[str]
    free_for: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Plan:
    take: tuple[str, ...] = ()
    hand_back: tuple[str, ...] = ()


def plan(
    view: View, *, handback_after_s: float, grace_s: float, placement: Placement = own_name
) -> Plan:
    """The leases to try to take and the ones to hand back, in name order."""
    live = set(view.live_for) | {view.me}  # we are live while we decide
    take: list[str] = []
    hand_back: list[str] = []
    for name in sorted(view.holders):
        want = preferred(placement(name), live)
        holder = view.holders[name]
        if name in view.held:
            if want != view.me and view.live_for.get(want or "", 0.0) >= handback_after_s:
                hand_back.append(name)
            continue
        if holder == view.me:
            take.append(name)  # ours from a previous life: re-acquiring keeps the token
            continue
        if holder is not None:
            continue
        ours = want == view.me or want not in view.live_for
        # Free, its preferred owner live: it takes it on its next turn, unless it has not
        # for ``grace_s`` (then anyone does).
        if ours or view.free_for.get(name, 0.0) >= grace_s:
            take.append(name)
    return Plan(tuple(take), tuple(hand_back))


def placement(explicit: Mapping[str, str], switches: Sequence[str]) -> Placement:
    """The placement rule of ``[cluster]``: ``explicit`` first (lease name -> key); a switch
    lease's key is the switch's name; with one switch, every other lease follows it (only
    the switch's owner can place the calls of its queues and campaigns); otherwise a lease
    is placed by its own name."""
    table = dict(explicit)
    lone = switches[0] if len(switches) == 1 else None

    def key(name: str) -> str:
        if name in table:
            return table[name]
        kind, _, rest = name.partition(":")
        if kind == "switch":
            return rest
        return lone if lone is not None else name

    return key
