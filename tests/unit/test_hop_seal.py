"""The seal on a forwarded request (engine/auth/hop.py): accepted once, from a peer with the
shared key, for the request it was made for, while fresh; refused otherwise."""

from __future__ import annotations

from engine.auth.hop import HopSeal

KEY = b"k" * 64
AUTH = "Bearer crm-token"


class Wall:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_seal_is_good_once_for_its_own_request() -> None:
    wall = Wall()
    sender, owner = HopSeal(lambda: KEY, wall=wall), HopSeal(lambda: KEY, wall=wall)
    seal = sender.seal("eng-a", "DELETE", "/v1/calls/c1", AUTH)
    assert seal is not None
    # Another request, another sender, another credential: not this seal's.
    assert not owner.check("eng-a", seal, "POST", "/v1/calls/c1", AUTH)
    assert not owner.check("eng-a", seal, "DELETE", "/v1/calls/c2", AUTH)
    assert not owner.check("eng-x", seal, "DELETE", "/v1/calls/c1", AUTH)
    assert not owner.check("eng-a", seal, "DELETE", "/v1/calls/c1", "Bearer other")
    assert owner.check("eng-a", seal, "DELETE", "/v1/calls/c1", AUTH)
    assert not owner.check("eng-a", seal, "DELETE", "/v1/calls/c1", AUTH)  # a replay


def test_a_forged_stale_or_unkeyed_seal_is_refused() -> None:
    wall = Wall()
    owner = HopSeal(lambda: KEY, wall=wall)
    forger = HopSeal(lambda: b"guess" * 13, wall=wall)
    forged = forger.seal("eng-a", "GET", "/v1/x", AUTH)
    assert forged is not None and not owner.check("eng-a", forged, "GET", "/v1/x", AUTH)
    for junk in ("", "1", "abc.def.0123", f"{int(wall.now)}..", f"{int(wall.now)}.n."):
        assert not owner.check("eng-a", junk, "GET", "/v1/x", AUTH)
    old = HopSeal(lambda: KEY, wall=wall).seal("eng-a", "GET", "/v1/x", AUTH)
    assert old is not None
    wall.now += owner.max_age_s + 1
    assert not owner.check("eng-a", old, "GET", "/v1/x", AUTH)
    # No key known yet (Redis away at start): nothing sealed, nothing accepted.
    assert HopSeal(lambda: None).seal("eng-a", "GET", "/v1/x", AUTH) is None
    fresh = HopSeal(lambda: KEY, wall=wall).seal("eng-a", "GET", "/v1/x", AUTH)
    assert fresh is not None
    assert not HopSeal(lambda: None, wall=wall).check("eng-a", fresh, "GET", "/v1/x", AUTH)


def test_remembered_nonces_are_bounded() -> None:
    wall = Wall()
    sender = HopSeal(lambda: KEY, wall=wall)
    owner = HopSeal(lambda: KEY, wall=wall, max_nonces=2)
    seals = [sender.seal("eng-a", "GET", "/v1/x", AUTH) for _ in range(3)]
    assert [owner.check("eng-a", s or "", "GET", "/v1/x", AUTH) for s in seals] == [
        True,
        True,
        False,  # full, and none expired: counted as an ordinary request
    ]
    wall.now += 2 * owner.max_age_s + 1
    late = sender.seal("eng-a", "GET", "/v1/x", AUTH)
    assert late is not None and owner.check("eng-a", late, "GET", "/v1/x", AUTH)
