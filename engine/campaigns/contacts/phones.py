"""Phone numbers to E.164 and time zones with ``phonenumbers``, fast and with its exact answers.

``phonenumbers`` costs 20-50 µs a number; a 1,000,000-row list needs better. Two layers:

1. :func:`phone_exact`: the library's own functions, with the number's region and type worked
   out once instead of three times (``is_valid_number``, ``number_type`` and
   ``time_zones_for_number`` each redo them).
2. :class:`TailCache`: numbers that differ only in their last digits get the same answer, with
   those digits carried over. That holds when every pattern the library evaluates for the
   number's country code and length ends in ``\\d`` atoms that cover those digits (a fullmatch
   cannot then tell them apart) and every prefix pattern stops before them. This module proves
   it per (country code, length, default region) by reading the metadata's regular expressions
   (``re._parser``), and uses the cache only where the proof holds; otherwise layer 1 answers.
   The key is the text as given with its last digits masked, so spacing and punctuation are the
   representative's exactly; only inputs made of ASCII digits, spaces, ``-().`` and a leading
   ``+`` qualify (nothing else can start an extension or change how the text is read).

tests/unit/campaigns/test_phones.py compares both layers with plain phonenumbers calls on a
large sample of numbers of many countries, valid and not.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType
from phonenumbers import phonenumberutil as pnu
from phonenumbers import timezone as _pntz

# The regex parser (what re.compile uses) and phonenumbers' tz tables: neither is typed.
sre_c: Any = importlib.import_module("re._constants")
sre_parse: Any = importlib.import_module("re._parser")
pntz: Any = _pntz

UNKNOWN_TZ = "Etc/Unknown"  # phonenumbers' answer when it knows no zone
MAX_TAIL = 4  # trailing digits masked in the cache key (and carried over)
_DESCS = (
    "general_desc",
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)
_SIMPLE = re.compile(r"^\+?[0-9 ().-]+$")
_DIGITS = frozenset("0123456789")
_MASK = "X" * MAX_TAIL


class PhoneError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    # The zones phonenumbers gives, in its order; empty when it knows none.
    zones: tuple[str, ...]


def phone_plain(text: str, region: str) -> Phone:
    """The reference: phonenumbers' public calls one after another (the tests compare)."""
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as err:
        raise PhoneError(f"not a phone number ({err._msg})") from None
    if not phonenumbers.is_valid_number(num):
        raise PhoneError(_invalid(text, region, num.country_code or 0))
    zones = tuple(z for z in pntz.time_zones_for_number(num) if z != UNKNOWN_TZ)
    return Phone(phonenumbers.format_number(num, PhoneNumberFormat.E164), zones)


def _invalid(text: str, region: str, cc: int) -> str:
    """Why phonenumbers refused a number: its country's patterns, or the default region's."""
    if text.lstrip().startswith("+"):
        return f"not a valid +{cc} number (no number plan pattern of +{cc} matches)"
    return f"not a valid number for region {region} (no number plan pattern matches)"


@dataclass(frozen=True, slots=True)
class _Parsed:
    e164: str
    cc: int
    geographic: bool
    region: str = ""  # the number's region (region_code_for_number)


def _parse(text: str, region: str) -> _Parsed:
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as err:
        raise PhoneError(f"not a phone number ({err._msg})") from None
    cc = num.country_code or 0  # parse() always sets it
    region_of = phonenumbers.region_code_for_number(num)
    metadata = (
        None
        if region_of is None
        else PhoneMetadata.metadata_for_region_or_calling_code(cc, region_of)
    )
    # What is_valid_number, number_type and time_zones_for_number all compute first.
    ntype = (
        PhoneNumberType.UNKNOWN
        if metadata is None
        else pnu._number_type_helper(phonenumbers.national_significant_number(num), metadata)
    )
    if ntype == PhoneNumberType.UNKNOWN:
        raise PhoneError(_invalid(text, region, cc))
    geographic = phonenumbers.is_number_type_geographical(ntype, cc)
    e164 = phonenumbers.format_number(num, PhoneNumberFormat.E164)
    return _Parsed(e164, cc, geographic, region_of or "")


def _zones(parsed: _Parsed) -> tuple[str, ...]:
    if parsed.geographic:
        # time_zones_for_geographical_number reads only these leading E.164 digits.
        return _geo_zones(parsed.e164[1 : 1 + pntz.TIMEZONE_LONGEST_PREFIX])
    return _country_zones(parsed.cc)


@lru_cache(maxsize=65536)
def _geo_zones(digits: str) -> tuple[str, ...]:
    """time_zones_for_geographical_number: the longest known prefix of the E.164 digits."""
    found = pntz._UNKNOWN_TIME_ZONE_LIST
    for prefix_len in range(pntz.TIMEZONE_LONGEST_PREFIX, 0, -1):
        prefix = digits[:prefix_len]
        if prefix in pntz.TIMEZONE_DATA:
            found = pntz.TIMEZONE_DATA[prefix]
            break
    return tuple(z for z in found if z != UNKNOWN_TZ)


@lru_cache(maxsize=1024)
def _country_zones(cc: int) -> tuple[str, ...]:
    found = pntz._country_level_time_zones_for_number(phonenumbers.PhoneNumber(cc, 0))
    return tuple(z for z in found if z != UNKNOWN_TZ)


@lru_cache(maxsize=65536)  # repeated numbers are parsed once
def phone_exact(text: str, region: str) -> Phone:
    """Layer 1: phonenumbers' answer, region and type worked out once."""
    parsed = _parse(text, region)
    return Phone(parsed.e164, _zones(parsed))


# -- the proof that trailing digits do not matter ----------------------------------------------


def _is_any_digit(op: Any, av: Any) -> bool:
    return bool(
        op is sre_c.IN
        and (av == [(sre_c.CATEGORY, sre_c.CATEGORY_DIGIT)] or av == [(sre_c.RANGE, (48, 57))])
    )


def _pure_digits(items: list[Any]) -> bool:
    """Whether the items match only runs of any digit (``\\d``, ``[0-9]``, their groups)."""
    for op, av in items:
        if _is_any_digit(op, av):
            continue
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            if not _pure_digits(list(av[2])):
                return False
        elif op is sre_c.SUBPATTERN:
            if not _pure_digits(list(av[-1])):
                return False
        elif op is sre_c.BRANCH:
            if not all(_pure_digits(list(b)) for b in av[1]):
                return False
        else:
            return False
    return True


def _free_suffix(items: list[Any], length: int, used: tuple[int, int], budget: list[int]) -> int:
    """How many trailing characters of a full match of ``length`` characters are matched by
    ``\\d`` atoms only: any digits there can be swapped for others without changing whether
    the pattern matches.

    ``items`` must match the text left of ``used`` (min, max) characters already taken from the
    end; alternatives that cannot make up ``length`` are left out (they cannot match at all).
    ``budget`` bounds the work on patterns with many nested alternatives (0 when spent).
    """
    budget[0] -= 1
    if budget[0] <= 0 or not items:
        return 0
    op, av = items[-1]
    rest = items[:-1]
    if _pure_digits([(op, av)]):
        lo, hi = _width([(op, av)])
        return lo + _free_suffix(rest, length, (used[0] + lo, used[1] + hi), budget)
    if op is sre_c.SUBPATTERN:
        return _free_suffix(rest + list(av[-1]), length, used, budget)
    if op is sre_c.BRANCH:
        found = [
            _free_suffix(rest + list(b), length, used, budget)
            for b in av[1]
            if _fits(rest + list(b), length, used)
        ]
        return min(found) if found else MAX_TAIL
    return 0


def _fits(items: list[Any], length: int, used: tuple[int, int]) -> bool:
    lo, hi = _width(items)
    return lo + used[0] <= length <= hi + used[1]


def _width(items: list[Any]) -> tuple[int, int]:
    lo, hi = sre_parse.SubPattern(sre_parse.State(), items).getwidth()
    return int(lo), int(hi)


@lru_cache(maxsize=4096)
def free_suffix(pattern: str, length: int) -> int:
    """Trailing digits a fullmatch of ``pattern`` on ``length`` digits cannot tell apart."""
    items = list(sre_parse.parse(pattern))
    if not _fits(items, length, (0, 0)):
        return MAX_TAIL  # no text of this length matches, whatever its digits
    return _free_suffix(items, length, (0, 0), [10_000])


@lru_cache(maxsize=4096)
def prefix_reach(pattern: str) -> int:
    """The most characters ``re.match(pattern, s)`` can look at."""
    return int(sre_parse.parse(pattern).getwidth()[1])


def _metadata(region: str) -> Any:
    return PhoneMetadata.metadata_for_region(region)


@lru_cache(maxsize=4096)
def tail_digits(cc: int, nsn_len: int, region: str, number_region: str) -> int:
    """How many trailing digits of a valid ``cc`` number of ``nsn_len`` national digits, parsed
    with default ``region`` and found to be of ``number_region``, phonenumbers cannot tell
    apart (0: none proven)."""
    listed = pnu.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    default = _metadata(region)
    main = _metadata(phonenumbers.region_code_for_country_code(cc))
    if default is None or main is None or number_region not in listed:
        return 0
    tail = MAX_TAIL
    # region_code_for_number tries the code's regions in order up to the number's: each one
    # before said no (leading digits, or no type matched), the number's said yes. Neighbours
    # get the same answers when those patterns cannot see the tail. The default region's
    # general pattern is read by parse() for national input.
    tried = [*listed[: listed.index(number_region) + 1], region]
    for name in tried:
        md = _metadata(name)
        if md is None:
            return 0
        for desc in _DESCS:
            d = getattr(md, desc)
            if d is not None and d.national_number_pattern is not None:
                tail = min(tail, free_suffix(d.national_number_pattern, nsn_len))
        if md.leading_digits:
            tail = min(tail, nsn_len - prefix_reach(md.leading_digits))
    # parse() strips prefixes with the default region's and the number's main region's rules.
    for md in (default, main):
        if md.national_prefix_transform_rule is not None:
            return 0  # the transform may move digits about
        for prefix in (md.national_prefix_for_parsing, md.international_prefix):
            # They read the front of the national number; the tail must lie beyond.
            if prefix:
                tail = min(tail, nsn_len - prefix_reach(prefix))
    return max(tail, 0)


@dataclass(frozen=True, slots=True)
class _Entry:
    parsed: _Parsed | None
    error: str
    tail: int


class TailCache:
    """Layer 2 over layer 1; see the module docstring. Bounded (entries are dropped FIFO)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], _Entry] = {}
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def lookup(self, text: str, region: str) -> Phone:
        if not _SIMPLE.match(text) or "+" in text[1:]:
            return phone_exact(text, region)
        tail = text[-MAX_TAIL:]
        if tail.isdigit() and tail.isascii():
            key = (text[:-MAX_TAIL] + _MASK, region)  # the common shape: digits at the end
            positions: list[int] | None = None
        else:
            positions = [i for i, ch in enumerate(text) if ch in _DIGITS]
            chars = list(text)
            for i in positions[-MAX_TAIL:]:
                chars[i] = "X"
            key = ("".join(chars), region)
            tail = "".join(text[i] for i in positions[-MAX_TAIL:])
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            entry = self._fill(text, region, tail)
            with self._lock:  # parse_chunk may run on several threads (no process pool)
                if len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)), None)
                self._entries[key] = entry
            return self._answer(entry)
        if entry.tail < MAX_TAIL:
            # Not proven for this many digits: only the text itself is known.
            return phone_exact(text, region)
        self.hits += 1
        if entry.parsed is None:
            raise PhoneError(entry.error)
        e164 = entry.parsed.e164[:-MAX_TAIL] + tail
        return Phone(e164, _zones(_Parsed(e164, entry.parsed.cc, entry.parsed.geographic)))

    @staticmethod
    def _answer(entry: _Entry) -> Phone:
        if entry.parsed is None:
            raise PhoneError(entry.error)
        return Phone(entry.parsed.e164, _zones(entry.parsed))

    @staticmethod
    def _fill(text: str, region: str, typed: str) -> _Entry:
        try:
            parsed = _parse(text, region)
        except PhoneError as err:
            # Which country code and length the text would have had is unknown here: an
            # invalid number proves nothing about its neighbours.
            return _Entry(None, str(err), 0)
        nsn_len = len(parsed.e164) - 1 - len(str(parsed.cc))
        tail = tail_digits(parsed.cc, nsn_len, region, parsed.region)
        # The digits typed last must be the number's last digits (no extension, no transform).
        if tail < MAX_TAIL or len(typed) < MAX_TAIL or not parsed.e164.endswith(typed):
            tail = 0
        return _Entry(parsed, "", tail)
