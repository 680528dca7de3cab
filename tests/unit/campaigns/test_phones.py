"""The fast phone path gives phonenumbers' own answers (E.164, validity, zones, error text)."""

from __future__ import annotations

import random

import pytest

from engine.campaigns.contacts.digit_regex import fullmatch_blind, prefix_blind
from engine.campaigns.contacts.phones import (
    Phone,
    PhoneError,
    TailCache,
    phone_exact,
    phone_plain,
)

US_AREAS = ("212", "415", "312", "907", "808", "800", "900", "264", "268", "876", "787", "649")


def _sample(rng: random.Random) -> str:
    """Numbers as lists hold them: several countries, spellings, valid and not."""
    kind = rng.random()

    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    if kind < 0.35:
        body = f"{rng.choice(US_AREAS)}{digits(3)}{digits(4)}"
        style = rng.randrange(4)
        if style == 0:
            return "+1" + body
        if style == 1:
            return f"({body[:3]}) {body[3:6]}-{body[6:]}"
        if style == 2:
            return "1 " + body
        return body[: rng.randint(7, 10)]  # some too short
    if kind < 0.55:
        head = rng.choice(("7", "20", "1624", "1481", "1534", "845", "870", "800", "121", "161"))
        return f"+44 {head}{digits(rng.choice((6, 7, 8)))}"
    if kind < 0.65:
        return f"+86 1{rng.choice('3456789')}{digits(9)}"
    if kind < 0.85:
        cc = rng.choice((33, 49, 7, 61, 91, 39, 34, 52, 55, 81, 852, 971, 234))
        return f"+{cc} {digits(rng.randint(6, 11))}"
    return rng.choice(("0", "00", "011", "+", "")) + digits(rng.randint(5, 13))


def _answer(fn: object, text: str, region: str) -> Phone | str:
    try:
        return fn(text, region)  # type: ignore[operator, no-any-return]
    except PhoneError as err:
        return f"error: {err}"


@pytest.mark.parametrize("region", ["US", "GB"])
def test_fast_paths_match_plain_phonenumbers(region: str) -> None:
    rng = random.Random(20261204)
    sample = [_sample(rng) for _ in range(30_000)]
    # Neighbours of earlier numbers (same head, other last digits): the cache's hits.
    sample += [s[:-3] + f"{rng.randrange(1000):03d}" for s in sample[:10_000] if len(s) > 4]
    # ... and in their last 6 and 8 characters (the widest tails the cache carries over).
    for width in (6, 8):
        sample += [
            s[:-width]
            + "".join(c if not c.isdigit() else rng.choice("0123456789") for c in s[-width:])
            for s in sample[:5_000]
            if len(s) > width
        ]
    # After an international prefix phonenumbers reads one more digit: 0 there is no prefix.
    sample += ["01103383761", "01169358607", "01120123456", "01101234567"]
    cache = TailCache()
    for text in sample:
        plain = _answer(phone_plain, text, region)
        assert _answer(phone_exact, text, region) == plain, text
        assert _answer(cache.lookup, text, region) == plain, text
    # The sample did exercise the cache (a test of the fast path, not only the slow one).
    assert cache.hits > 1_000


def test_cache_never_carries_over_a_tail_it_has_not_proven() -> None:
    cache = TailCache()
    # Brazil's metadata rewrites national prefixes (national_prefix_transform_rule): digits
    # may move, so nothing is proven and every number is parsed in full.
    for last in range(50):
        text = f"+55 21 98765 43{last:02d}"
        assert cache.lookup(text, "US") == phone_plain(text, "US")
    assert cache.hits == 0


def test_cache_carries_over_the_widest_proven_tail() -> None:
    cache = TailCache()
    # A +86 13x mobile: all 8 digits after the block are free; US numbers: the 6 after the
    # exchange's first digit (which the NANP patterns constrain).
    for text in ("+86 138 0013 8000", "+86 138 9999 1234", "(212) 555-0100", "(212) 599-9999"):
        assert cache.lookup(text, "US") == phone_plain(text, "US")
    assert (cache.hits, cache.misses) == (2, 2)


def test_tail_proof_on_simple_patterns() -> None:
    assert fullmatch_blind(r"[2-9]\d{9}", "2", 9)
    assert fullmatch_blind(r"8001111|800\d{6}", "800", 6)  # the literal cannot be 9 long
    assert not fullmatch_blind(r"8001111|800\d{4}", "800", 4)  # here it can: the tail matters
    assert not fullmatch_blind(r"12(?:34|56)\d{2}", "123", 3)
    assert fullmatch_blind(r"12(?:34|56)\d{2}", "1234", 2)
    # The head decides which alternatives are still alive.
    assert fullmatch_blind(r"983[2-57-9]\d{6}|212[2-9]\d{6}", "2125", 6)
    assert not fullmatch_blind(r"983[2-57-9]\d{6}|212[2-9]\d{6}", "212", 7)
    assert fullmatch_blind(r"1\d(?:\d{3})?", "1", 4)
    assert fullmatch_blind(r"7\d{3}", "8", 3)  # dead: no tail matches
    assert not fullmatch_blind(r"(?=1)1\d", "1", 1)  # a look-ahead: not modelled, not proven
    # Prefix matches (re.match): blind when the pattern stops in the head, or dies there.
    assert prefix_blind(r"011", "0113")
    assert prefix_blind(r"0|180020", "2")
    assert not prefix_blind(r"0|180020", "1")
    assert not prefix_blind(r"1|12345", "12")  # "1" may end the match, or the longer one


def test_error_reasons_say_what_is_wrong() -> None:
    with pytest.raises(PhoneError, match="not a phone number"):
        phone_exact("not a number", "US")
    with pytest.raises(PhoneError, match=r"not a valid \+1 number"):
        phone_exact("+1 555 12", "US")
    with pytest.raises(PhoneError, match="not a valid number for region US"):
        phone_exact("555 12 34", "US")
