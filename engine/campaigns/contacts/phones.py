"""Phone numbers to E.164 and time zones with ``phonenumbers``, fast and with its exact answers.

``phonenumbers`` costs 20-50 µs a number; a 1,000,000-row list needs better. Two layers:

1. :func:`phone_exact`: the library's own functions, with the number's region and type worked
   out once instead of three times (``is_valid_number``, ``number_type`` and
   ``time_zones_for_number`` each redo them).
2. :class:`TailCache`: numbers that differ only in their last digits get the same answer, with
   those digits carried over. That holds when every pattern the library evaluates on the
   number gives the same answer whatever those digits are, given the digits before them.
   :func:`tail_blind` proves it for the head of digits typed (the first number of a cache key)
   by reading the metadata's regular expressions as languages over the ten digits
   (engine/campaigns/contacts/digit_regex.py): the types' patterns on the national number,
   the general ones and the prefix patterns (international, national, leading digits) on
   every string parse() reads. The widest of 8, 6 or 4 digits that is proven is used (+86 13x
   mobiles: 8; a US exchange: 6, since NANP patterns constrain its first digit; UK mobiles
   and London: mostly 6); where none is, layer 1 answers. Invalid numbers are cached the same
   way (the same patterns fail for the neighbours: same reason). The key is the text's shape
   (every digit masked) and its digits but the tail, so spacing and punctuation are the
   representative's exactly; only inputs made of ASCII digits, spaces, ``-().`` and a leading
   ``+`` qualify (nothing else can start an extension or change how the text is read).

tests/unit/campaigns/test_phones.py compares both layers with plain phonenumbers calls on a
large sample of numbers of many countries, valid and not.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType
from phonenumbers import phonenumberutil as pnu
from phonenumbers import timezone as _pntz

from engine.campaigns.contacts.digit_regex import fullmatch_blind, prefix_blind

# phonenumbers' tz tables are not typed.
pntz: Any = _pntz

UNKNOWN_TZ = "Etc/Unknown"  # phonenumbers' answer when it knows no zone
# Trailing digits masked in the cache key (and carried over), widest first: 8 covers mobile
# ranges such as +86 13x, 6 a US exchange's lines or a UK mobile block, 4 the rest.
TAILS = (8, 6, 4)
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
    parsed, error = _parse_or_invalid(text, region)
    if error:
        raise PhoneError(error)
    return parsed


def _parse_or_invalid(text: str, region: str) -> tuple[_Parsed, str]:
    """The number and "" if valid; if phonenumbers parses it but calls it invalid, what it
    would be (``region`` "") and why; :class:`PhoneError` if it does not parse at all."""
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as err:
        raise PhoneError(f"not a phone number ({err._msg})") from None
    cc = num.country_code or 0  # parse() always sets it
    e164 = phonenumbers.format_number(num, PhoneNumberFormat.E164)
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
        return _Parsed(e164, cc, False), _invalid(text, region, cc)
    geographic = phonenumbers.is_number_type_geographical(ntype, cc)
    return _Parsed(e164, cc, geographic, region_of or ""), ""


def _zones(parsed: _Parsed) -> tuple[str, ...]:
    if parsed.geographic:
        return _geo_zones(_geo_key(parsed.e164, parsed.cc))
    return _country_zones(parsed.cc)


def _geo_key(e164: str, cc: int) -> str:
    """The leading E.164 digits time_zones_for_geographical_number can read: at most
    TIMEZONE_LONGEST_PREFIX, and no more than the longest zone-table key of the country code
    (country codes are prefix-free, so every key starting with its digits is its own: a longer
    prefix of the number is never a key). For +1 that is 7 digits (area code and exchange), so
    _geo_zones's cache holds one entry an exchange instead of one per 100 lines."""
    return e164[1 : 1 + _zone_key_len(cc)]


@lru_cache(maxsize=1024)
def _zone_key_len(cc: int) -> int:
    digits = str(cc)
    longest = max((len(k) for k in pntz.TIMEZONE_DATA if k.startswith(digits)), default=0)
    table_longest: int = pntz.TIMEZONE_LONGEST_PREFIX
    return min(table_longest, max(longest, len(digits)))


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


def _metadata(region: str) -> Any:
    return PhoneMetadata.metadata_for_region(region)


def _read_offsets(head: str, nsn_at: int, cc: int, default: Any, main: Any) -> list[int]:
    """Where the strings phonenumbers reads start in the typed digits: the input itself, less
    the default country code, less an international prefix and the country code, the national
    number, and each of those less a national prefix. (Where a prefix matches is the same for
    every tail: :func:`tail_blind` proves it before it trusts this.)"""
    offsets = {0, len(str(default.country_code)), len(str(cc)), nsn_at}
    idd = default.international_prefix
    if idd and (m := re.match(idd, head)) is not None:
        offsets |= {m.end(), m.end() + len(str(cc))}
    for at in list(offsets):
        for md in (default, main):
            prefix = md.national_prefix_for_parsing
            if prefix and at < len(head) and (m := re.match(prefix, head[at:])) is not None:
                offsets.add(at + m.end())
    return sorted(at for at in offsets if at < len(head))


@lru_cache(maxsize=65536)
def tail_blind(
    head: str, tail: int, nsn_len: int, region: str, number_region: str, cc: int
) -> bool:
    """Whether phonenumbers cannot tell apart numbers typed as ``head`` and any ``tail`` more
    digits (the text's ASCII digits, in order; the national number is their last ``nsn_len``):
    a ``cc`` number parsed with default ``region`` and found to be of ``number_region`` (""
    when parsed but no region's patterns matched: invalid).

    Each pattern the library evaluates must give the same answer for every tail
    (engine/campaigns/contacts/digit_regex.py), on each string it is evaluated on.
    """
    listed = pnu.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    default = _metadata(region)
    main = _metadata(phonenumbers.region_code_for_country_code(cc))
    if default is None or main is None or (number_region and number_region not in listed):
        return False
    nsn_at = len(head) + tail - nsn_len
    if nsn_at < 0 or nsn_len <= tail:
        return False
    heads = [head[at:] for at in _read_offsets(head, nsn_at, cc, default, main)]
    # parse() strips prefixes with the default region's and the number's main region's rules.
    for md in (default, main):
        if md.national_prefix_transform_rule is not None:
            return False  # the transform may move digits about
        # After an international prefix, phonenumbers reads one more digit (a 0 there means
        # the prefix is not one: no country code starts with 0).
        for prefix, peek in ((md.national_prefix_for_parsing, 0), (md.international_prefix, 1)):
            if prefix and not all(prefix_blind(prefix, h, peek) for h in heads):
                return False
    # region_code_for_number tries the code's regions in order up to the number's: each one
    # before said no (leading digits, or no type matched), the number's said yes. Neighbours
    # get the same answers when those patterns cannot see the tail. General patterns are also
    # read on the input before prefixes are stripped (the default region's, for national
    # input), the types only on the national number.
    tried = listed[: listed.index(number_region) + 1] if number_region else listed
    national = head[nsn_at:]
    for name in (*tried, region):
        md = _metadata(name)
        if md is None:
            return False
        if md.leading_digits and not prefix_blind(md.leading_digits, national):
            return False
        for desc in _DESCS:
            d = getattr(md, desc)
            if d is None or d.national_number_pattern is None:
                continue
            read = heads if desc == "general_desc" else [national]
            if not all(fullmatch_blind(d.national_number_pattern, h, tail) for h in read):
                return False
    return True


@dataclass(frozen=True, slots=True)
class _Entry:
    parsed: _Parsed | None
    error: str
    tail: int  # the masked digits (one of TAILS), or 0: none proven, ask layer 1


# The key's two parts are cut from the text's ASCII bytes: bytes.translate is a table lookup per
# byte, str.translate a dict lookup per character (3x the time on the bench's numbers, a few
# µs a row). _SIMPLE lets only ASCII through ([0-9] is not \d), so the bytes are the text.
_TO_X = bytes.maketrans(b"0123456789", b"X" * 10)
_NOT_DIGITS = b"+ ().-"  # what _SIMPLE lets through, less the digits


class TailCache:
    """Layer 2 over layer 1; see the module docstring. Bounded (entries are dropped FIFO)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[bytes, bytes, str], _Entry] = {}
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def lookup(self, text: str, region: str) -> Phone:
        if not _SIMPLE.match(text) or "+" in text[1:]:
            return phone_exact(text, region)
        # The key of width n, ``text`` with its last n digits masked, is (its shape: every
        # digit masked; its digits but the last n): the same information, two C-speed calls.
        ascii_text = text.encode("ascii")
        shape, digits = ascii_text.translate(_TO_X), ascii_text.translate(None, _NOT_DIGITS)
        for tail in TAILS:  # widest first: an entry is kept under its own width's key
            entry = self._entries.get((shape, digits[:-tail], region))
            if entry is None or len(digits) <= tail:
                continue
            if entry.tail == 0:
                # Nothing proven for this head: only the text itself is known.
                return phone_exact(text, region)
            self.hits += 1
            if entry.parsed is None:
                raise PhoneError(entry.error)
            e164 = entry.parsed.e164[:-tail] + digits[-tail:].decode("ascii")
            if entry.parsed.geographic:
                return Phone(e164, _geo_zones(_geo_key(e164, entry.parsed.cc)))
            return Phone(e164, _country_zones(entry.parsed.cc))
        self.misses += 1
        entry, key = self._fill(text, region, shape, digits)
        if key is not None:
            with self._lock:  # parse_chunk may run on several threads (no process pool)
                if len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)), None)
                self._entries[key] = entry
        if entry.parsed is None:
            raise PhoneError(entry.error)
        return Phone(entry.parsed.e164, _zones(entry.parsed))

    @staticmethod
    def _fill(
        text: str, region: str, shape: bytes, digit_bytes: bytes
    ) -> tuple[_Entry, tuple[bytes, bytes, str] | None]:
        """The entry for ``text`` and the key to keep it under (None: keep nothing)."""
        digits = digit_bytes.decode("ascii")
        # Where a head proves nothing, lookups of its texts go straight to layer 1.
        nothing = (shape, digit_bytes[: -TAILS[-1]], region) if len(digits) > TAILS[-1] else None
        try:
            parsed, error = _parse_or_invalid(text, region)
        except PhoneError as err:
            # Which country code and length the text would have had is unknown here: a text
            # phonenumbers cannot parse proves nothing about its neighbours.
            return _Entry(None, str(err), 0), nothing
        nsn_len = len(parsed.e164) - 1 - len(str(parsed.cc))
        for tail in TAILS:
            # The digits typed last must be the national number (no extension, no
            # transform; so the tail is its end), and no pattern may see the tail.
            if (
                len(digits) > tail
                and digits.endswith(parsed.e164[1 + len(str(parsed.cc)) :])
                and tail_blind(digits[:-tail], tail, nsn_len, region, parsed.region, parsed.cc)
            ):
                entry = _Entry(None if error else parsed, error, tail)
                return entry, (shape, digit_bytes[:-tail], region)
        return _Entry(None if error else parsed, error, 0), nothing
