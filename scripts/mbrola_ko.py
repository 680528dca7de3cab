"""Korean test speech through the MBROLA ``hn1`` diphone voice (espeak-ng as its front end).

    python scripts/mbrola_ko.py [--path var/espeak-ng-mbrola] [--check TEXT ...]

espeak-ng's own Korean is a formant voice that the Korean Vosk model does not recognise
(docs/speech.md, round 5). MBROLA ``hn1`` (Debian non-free ``mbrola-hn1``) is a Korean male
voice made of recorded diphones; espeak-ng can drive it, but ships no ``mb-hn1`` voice, and
its ``hn1`` phoneme translation covers a few phonemes only, so most diphones espeak-ng's
Korean needs are unknown to hn1 and MBROLA replaces them with silence. This module holds the
project's own translation table (``rules()``; written for this project from hn1's README
phoneme set and the phonemes espeak-ng 1.51 outputs for Korean) and builds a private
espeak-ng data directory (``build``) that adds the ``mb-hn1`` voice on top of the system's
data, which is linked, not copied or modified. Use it as

    espeak-ng --path=<ESPEAK_PATH> -v mb-hn1 -q --pho "텍스트" | mbrola -R "<RENAME>" hn1 - out.wav

(``synthesize()``; ``python scripts/mbrola_ko.py --say TEXT --out x.wav``). Not ``espeak-ng -w``:
espeak-ng keeps at most 4 characters of an MBROLA phoneme name, and hn1 names ㅊ ``ts\\_h`` and
ㅉ ``ts\\_>``, so the table writes ``tsh`` / ``ts-`` and mbrola is told to rename them (``-R``),
which espeak-ng's own MBROLA driver does not do. Test audio only: hn1 is free for
non-commercial use (docs/architecture.md).

hn1's units (README.txt of mbrola-hn1, XSAMPA): onsets ``k t p ts\\`` (lax, voiceless: after a
pause or an obstruent coda), ``g d b dz\\`` (lax, voiced: after a vowel or a sonorant), tense
``k_> t_> p_> s_> ts\\_>``, aspirated ``k_h t_h p_h ts\\_h``, ``s`` (``s\\`` before i), ``h m n
4 l``; codas ``k_} t_} p_} m_} n_} l_} N``; vowels ``a E e V M i o 2 u``, glide + vowel as one
unit (``ja jE je jV jo ju wa wE we wV wi M\\i``). A coda is never followed by a vowel (the
consonant is then the next syllable's onset) and an onset never follows a vowel voiceless.

espeak-ng's Korean phonemes (``--pho`` with an empty table, over every onset x vowel, coda x
onset pair and everyday sentences): vowels ``a E e i o u u- @``; glides ``j w`` before the
vowel (``;`` between i and a vowel); ㄱ is ``g`` word-initially and ``q`` elsewhere, also as a
coda; ``p t k`` are lax onsets or codas; ``b d dZ;`` voiced onsets, ``tS;`` lax ㅈ; tense ``p- t-
k- q- s- tS;-`` (``t- s-`` also as codas); aspirated ``ph kh``, ``t h`` and ``tS h`` for ㅌ ㅊ;
``d-`` a ㄷ coda; ``*`` the ㄹ tap, ``L L/ l/`` ㄹ codas, ``l`` the second ㄹ of ㄹㄹ;
``m n N s h``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The directory to pass as ``espeak-ng --path`` (it holds ``espeak-ng-data``).
ESPEAK_PATH = ROOT / "var" / "espeak-ng-mbrola"
#: The espeak-ng voice this builds.
VOICE = "mb-hn1"
#: The same database with espeak-ng's stock ``hn1_phtrans``: the "before" of docs/speech.md.
STOCK_VOICE = "mb-hn1-stock"
#: The MBROLA database's name (espeak-ng finds ``/usr/share/mbrola/hn1/hn1`` by it).
MBROLA_VOICE = "hn1"
#: The translation table's name (``espeak-ng-data/mbrola_ph/<name>_phtrans``).
PHTRANS = "hn1ko"
#: Where espeak-ng (1.51, POSIX) looks for an MBROLA database named ``hn1``.
MBROLA_DATABASES = (
    Path("/usr/share/mbrola/hn1/hn1"),
    Path("/usr/share/mbrola/hn1"),
    Path("/usr/local/share/mbrola/hn1/hn1"),
    Path("/usr/local/share/mbrola/hn1"),
)
#: hn1 phonemes longer than espeak-ng's 4 characters, and the names the table uses instead
#: (mbrola ``-R``: the database's phoneme, then its new name).
RENAMED = {"ts\\_h": "tsh", "ts\\_>": "ts-"}
#: A fixed text for the build's own check: every Korean syllable shape the corpora use.
CHECK_TEXT = (
    "시장 에서 사과 를 샀어요. 것 같아요. 학교 에 가는 길 이에요. 의사 선생님. "
    "마실래요. 닫아요. 곧 출발 해요. 없었어요. 몇 시 에 열어요. 짖고 있어요. 외국 에 가요."
)
#: espeak-ng limits: a table line is read 39 characters at a time, and at most 255 rules.
MAX_LINE = 39
MAX_RULES = 255

#: hn1's phonemes (README.txt, XSAMPA), and the pause.
HN1_PHONEMES = frozenset(
    [
        "k",
        "k_>",
        "n",
        "t",
        "t_>",
        "4",
        "m",
        "p",
        "p_>",
        "s",
        "s_>",
        "ts\\",
        "ts\\_>",
        "ts\\_h",
        "k_h",
        "t_h",
        "p_h",
        "h",
        "g",
        "d",
        "b",
        "dz\\",
        "s\\",
        "l",
        "k_}",
        "n_}",
        "t_}",
        "l_}",
        "m_}",
        "p_}",
        "N",
        "a",
        "E",
        "ja",
        "jE",
        "V",
        "e",
        "jV",
        "je",
        "o",
        "wa",
        "wE",
        "2",
        "jo",
        "u",
        "wV",
        "we",
        "wi",
        "ju",
        "M",
        "M\\i",
        "i",
        "_",
    ]
)


class MbrolaMissing(OSError):
    """mbrola or its hn1 database is not installed (Debian contrib/non-free packages)."""


class MbrolaFailed(subprocess.SubprocessError):
    """mbrola refused the phonemes (an unknown diphone: a gap in the table)."""


@dataclass(frozen=True)
class Rule:
    """One line of an espeak-ng MBROLA translation table (docs/mbrola.md of espeak-ng):
    ``control`` bit 1 = skip the next phoneme, bit 2 = ``other`` is the previous phoneme
    (else the next); ``other`` ``NULL`` (any), ``VWL`` (a vowel) or ``_`` (a pause); ``out2``
    with ``percent``: two MBROLA phonemes, the first taking ``percent`` % of the duration."""

    phoneme: str
    other: str = "NULL"
    out: str = "NULL"
    control: int = 0
    percent: int = 0
    out2: str = ""

    def line(self) -> str:
        out, out2 = (RENAMED.get(x, x) for x in (self.out, self.out2))
        parts = [str(self.control), self.phoneme, self.other, str(self.percent), out]
        return " ".join([*parts, out2] if out2 else parts)


SKIP_NEXT = 1
PREV = 2

#: espeak-ng vowel -> hn1 vowel; after j / after w -> hn1's glide + vowel unit.
VOWELS = {"a": "a", "E": "E", "e": "e", "i": "i", "o": "o", "u": "u", "u-": "M", "@": "V"}
AFTER_J = {"a": "ja", "E": "jE", "e": "je", "@": "jV", "o": "jo", "u": "ju"}
AFTER_W = {"a": "wa", "E": "wE", "e": "we", "@": "wV", "i": "wi"}
#: espeak-ng phonemes that end a syllable in an obstruent (a lax onset after them is tense).
OBSTRUENT_CODAS = ("p", "t", "k", "q", "d-", "t-", "s-")
#: Lax stops that are an onset or a coda: (after a pause, voiced, tense, coda, + h).
LAX_STOPS = {
    "p": ("p", "b", "p_>", "p_}", "p_h"),
    "t": ("t", "d", "t_>", "t_}", "t_h"),
    "k": ("k", "g", "k_>", "k_}", "k_h"),
    "q": ("k", "g", "k_>", "k_}", "k_h"),
}
#: Obstruent codas before ㄴ ㅁ (and ㄹ, itself then ㄴ) are nasals (Korean standard
#: pronunciation, 비음화: 합니다 [함니다], 국물 [궁물], 국립 [궁닙]); espeak-ng writes the
#: coda as it is spelled (합니다: ``h a p n i d a``) except for ㄷ-like codas.
NASALISED = {"p": "m_}", "q": "N", "k": "N", "t": "n_}", "d-": "n_}", "t-": "n_}", "s-": "n_}"}
#: ㄹ after these is ㄹ (설날 [설랄], 신라 [실라]) or ㄴ (종로 [종노], and after NASALISED).
LATERAL_AFTER = ("n", "L", "L/", "l/")
N_AFTER = ("m", "N", "p", "q", "k", "t")
#: Onsets only: (after a pause, after an obstruent coda, elsewhere, + h). espeak-ng writes a
#: ㅊ coda before a vowel as ``tS; h`` (빛이: ``p i tS; h i``).
ONSETS = {
    "b": ("p", "p_>", "b", "p_h"),
    "d": ("t", "t_>", "d", "t_h"),
    "g": ("k", "k_>", "g", "k_h"),
    "dZ;": ("ts\\", "ts\\_>", "dz\\", "ts\\_h"),
    "tS;": ("ts\\", "ts\\_>", "dz\\", "ts\\_h"),
}
#: Consonants with one hn1 unit in every position they take.
PLAIN = {
    "p-": "p_>",
    "k-": "k_>",
    "q-": "k_>",
    "tS;-": "ts\\_>",
    "ph": "p_h",
    "kh": "k_h",
    "h": "h",
    "N": "N",
    "*": "4",
}
#: Onset before a vowel or glide, else coda: (onset, coda).
ONSET_OR_CODA = {
    "m": ("m", "m_}"),
    "n": ("n", "n_}"),
    "t-": ("t_>", "t_}"),
    "s-": ("s_>", "t_}"),
    "d-": ("d", "t_}"),
    "L": ("4", "l_}"),
    "L/": ("4", "l_}"),
    "l/": ("4", "l_}"),
}
#: Share of s's duration given to a short ㅡ before an utterance-initial 시: hn1 has no
#: diphone from silence into its s before i (``s\\``), nor ``s-i``.
S_LEAD_PERCENT = 15


def _before_vowel(phoneme: str, out: str) -> list[Rule]:
    return [Rule(phoneme, other, out) for other in ("VWL", "j", "w")]


def rules() -> list[Rule]:
    """The translation table, first match wins (espeak-ng searches it in order)."""
    table: list[Rule] = []
    for vowel, unit in VOWELS.items():
        if vowel in AFTER_J:
            table.append(Rule(vowel, "j", AFTER_J[vowel], PREV))
        if vowel in AFTER_W:
            table.append(Rule(vowel, "w", AFTER_W[vowel], PREV))
        table.append(Rule(vowel, out=unit))
    # A glide before a vowel is part of the vowel's unit; otherwise (ㅢ's offglide) a vowel.
    table += [Rule("j", "VWL"), Rule("j", out="i"), Rule("w", "VWL"), Rule("w", out="u")]
    table.append(Rule(";"))  # espeak-ng's i-to-vowel transition: hn1's i-V diphone has it
    for stop, (initial, voiced, tense, coda, aspirated) in LAX_STOPS.items():
        table.append(Rule(stop, "h", aspirated, SKIP_NEXT))
        table += [Rule(stop, nasal, NASALISED[stop]) for nasal in ("n", "m", "*")]
        table.append(Rule(stop, "_", initial, PREV))
        # After an obstruent coda it is an onset (two codas do not meet): tense.
        table += [Rule(stop, prev, tense, PREV) for prev in OBSTRUENT_CODAS]
        # Otherwise an onset before a vowel or glide (after a vowel or sonorant: voiced) ...
        table += _before_vowel(stop, voiced)
        table.append(Rule(stop, out=coda))  # ... or a coda
    for onset, (initial, tense, voiced, aspirated) in ONSETS.items():
        table.append(Rule(onset, "h", aspirated, SKIP_NEXT))
        table.append(Rule(onset, "_", initial, PREV))
        table += [Rule(onset, prev, tense, PREV) for prev in OBSTRUENT_CODAS]
        table.append(Rule(onset, out=voiced))
    table += [Rule("tS", "h", "ts\\_h", SKIP_NEXT), Rule("tS", out="ts\\_h")]
    # ㄹ after a ㄹ coda is l, not the tap (앓라: ``a l/ * a``).
    table += [Rule("*", prev, "l", PREV) for prev in LATERAL_AFTER]
    table += [Rule("*", prev, "n", PREV) for prev in N_AFTER]
    # ㄴ after a ㄹ coda is ㄹ; ㄴ before ㄹ a ㄹ coda.
    table += [Rule("n", prev, "l", PREV) for prev in ("L/", "l/")]
    table.append(Rule("n", "*", "l_}"))
    for consonant, unit in PLAIN.items():
        table.append(Rule(consonant, out=unit))
    for consonant, (onset, coda) in ONSET_OR_CODA.items():
        if consonant in NASALISED:
            table += [Rule(consonant, nasal, NASALISED[consonant]) for nasal in ("n", "m")]
        table += _before_vowel(consonant, onset)
        table.append(Rule(consonant, out=coda))
    # The second ㄹ of ㄹㄹ: a coda l before it unless espeak-ng wrote one.
    table += [Rule("l", prev, "l", PREV) for prev in ("L", "L/", "l/")]
    table.append(Rule("l", out="l_}", percent=50, out2="l"))
    # s: hn1's s before every vowel but i, where it is s\ (never after a pause, see above).
    table += [Rule("s", other, "s") for other in ("a", "E", "e", "o", "u", "u-", "@", "j", "w")]
    table.append(Rule("s", "_", "M", PREV, S_LEAD_PERCENT, "s\\"))
    table.append(Rule("s", out="s\\"))
    return table


def phtrans_source() -> str:
    """The table as espeak-ng's ``--compile-mbrola`` reads it (short lines, no comments:
    the compiler reads 39 characters at a time)."""
    return "\n".join(r.line() for r in rules()) + "\n"


def voice_file(phtrans: str = PHTRANS) -> str:
    """The espeak-ng voice file: Korean text, hn1's diphones, ``phtrans``'s table."""
    return (
        f"name korean-{VOICE}\nlanguage ko\ngender male\nmbrola {MBROLA_VOICE} {phtrans}_phtrans\n"
    )


def system_data() -> Path:
    """The installed espeak-ng's data directory (``espeak-ng --version`` names it)."""
    if shutil.which("espeak-ng") is None:
        raise MbrolaMissing("espeak-ng not found: run scripts/host-deps as root")
    out = subprocess.run(
        ["espeak-ng", "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = re.search(r"Data at:\s*(\S+)", out)
    if not found:
        raise RuntimeError(f"espeak-ng --version names no data directory: {out!r}")
    return Path(found.group(1))


def missing() -> str | None:
    """Why the hn1 voice cannot be built here, or None."""
    if shutil.which("mbrola") is None:
        return "mbrola not found (Debian non-free package 'mbrola')"
    if not any(p.is_file() for p in MBROLA_DATABASES):
        return "MBROLA hn1 database not found (Debian non-free package 'mbrola-hn1')"
    if shutil.which("espeak-ng") is None:
        return "espeak-ng not found"
    return None


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    link.symlink_to(target)


def build(path: Path = ESPEAK_PATH) -> Path:
    """Make ``path/espeak-ng-data``: the system's data linked entry by entry, plus the
    ``mb-hn1`` voice and the compiled table. Idempotent; returns ``path``."""
    why = missing()
    if why:
        raise MbrolaMissing(f"mbrola-ko: {why}; install it (non-free) to build {VOICE}")
    system = system_data()
    data = path / "espeak-ng-data"
    (data / "voices" / "mb").mkdir(parents=True, exist_ok=True)
    (data / "mbrola_ph").mkdir(exist_ok=True)
    for entry in system.iterdir():
        if entry.name not in ("voices", "mbrola_ph"):
            _link(entry, data / entry.name)
    for entry in (system / "voices").iterdir():
        if entry.name != "mb":
            _link(entry, data / "voices" / entry.name)
    for entry in (system / "mbrola_ph").iterdir():
        if entry.name != f"{PHTRANS}_phtrans":
            _link(entry, data / "mbrola_ph" / entry.name)
    (data / "voices" / "mb" / VOICE).write_text(voice_file())
    # espeak-ng's own hn1 table with the same voice, for before/after comparisons only
    # (``espeak-ng --path=... -v mb-hn1-stock -w``; MBROLA drops its unknown diphones).
    (data / "voices" / "mb" / STOCK_VOICE).write_text(voice_file("hn1"))
    source = path / PHTRANS
    source.write_text(phtrans_source())
    done = subprocess.run(
        ["espeak-ng", f"--path={path}", f"--compile-mbrola={source}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    compiled = data / "mbrola_ph" / f"{PHTRANS}_phtrans"
    if done.returncode != 0 or not compiled.is_file():
        raise RuntimeError(f"espeak-ng --compile-mbrola failed: {done.stdout}{done.stderr}")
    return path


def espeak_args(path: Path = ESPEAK_PATH) -> list[str]:
    """espeak-ng's arguments that select the voice: ``--path=... -v mb-hn1``."""
    return [f"--path={path}", "-v", VOICE]


def pho(
    text: str, path: Path = ESPEAK_PATH, *, speed: int | None = None, pitch: int | None = None
) -> str:
    """espeak-ng's MBROLA phoneme file for ``text`` with this voice (``speed``: words per
    minute, ``-s``; ``pitch``: 0-99, ``-p``, 50 by default)."""
    options = [*(["-s", str(speed)] if speed else []), *(["-p", str(pitch)] if pitch else [])]
    return subprocess.run(
        ["espeak-ng", *espeak_args(path), *options, "-q", "--pho", text],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


#: Duration factors applied to espeak-ng's timing (``retime``). espeak-ng times Korean for its
#: formant voice: against the hn1 speaker's own read sentences (the MBROLIGN-aligned
#: s131.pho / s132.pho shipped with mbrola-hn1: 361 phones), its consonants came out 1.75 x
#: too long and its vowels 0.7 x too short (means over 15 everyday sentences at 160 words per
#: minute: consonants 91 against 52 ms, vowels 53 against 77 ms; the tap 70 against 24 ms, h
#: 93 against 31 ms). Ratios of those means, rounded; the rest of espeak-ng's timing (speed,
#: phrase-final lengthening) is kept, and pauses are left alone.
VOWEL_FACTOR = 1.5
LEAD_MS = 100
CONSONANT_FACTOR = 0.6
DURATION_FACTORS = {
    "4": 0.35,
    "h": 0.35,
    "m": 0.7,
    "n": 0.7,
    "m_}": 0.85,
    "n_}": 0.85,
    "N": 0.8,
    "l_}": 0.8,
    "s_>": 0.85,
}
HN1_VOWELS = frozenset(
    [
        "a",
        "E",
        "e",
        "V",
        "M",
        "i",
        "o",
        "2",
        "u",
        "ja",
        "jE",
        "je",
        "jV",
        "jo",
        "ju",
        "wa",
        "wE",
        "we",
        "wV",
        "wi",
        "M\\i",
    ]
)


def retime(phonemes: str) -> str:
    """A ``.pho`` text with hn1's timing (``DURATION_FACTORS``); pitch points are in per cent
    of a phone's duration, so they follow."""
    # espeak-ng starts with the first phone; MBROLA needs the silence before it, or the first
    # diphone (pause to first phone) is not played and an utterance-initial consonant is lost.
    lines = [f"_\t{LEAD_MS}"]
    for line in phonemes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] != "_" and fields[1].isdigit():
            name = next((u for u, n in RENAMED.items() if n == fields[0]), fields[0])
            factor = DURATION_FACTORS.get(
                name, VOWEL_FACTOR if name in HN1_VOWELS else CONSONANT_FACTOR
            )
            fields[1] = str(max(1, round(int(fields[1]) * factor)))
            line = "\t".join(fields[:2]) + ("\t" + " ".join(fields[2:]) if fields[2:] else "")
        lines.append(line)
    return "\n".join(lines) + "\n"


def database() -> Path:
    found = next((p for p in MBROLA_DATABASES if p.is_file()), None)
    if found is None:
        raise MbrolaMissing(f"mbrola-ko: {missing()}")
    return found


def _mbrola(phonemes: Path, wav: Path, *, lenient: bool) -> subprocess.CompletedProcess[str]:
    rename = " ".join(f"{unit} {name}" for unit, name in RENAMED.items())
    return subprocess.run(
        [
            "mbrola",
            *(["-e"] if lenient else []),
            "-R",
            rename,
            str(database()),
            str(phonemes),
            str(wav),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def synthesize(
    text: str,
    wav: Path,
    path: Path = ESPEAK_PATH,
    *,
    speed: int | None = None,
    pitch: int | None = None,
) -> None:
    """Speak ``text`` into ``wav`` (16 kHz, hn1's rate). Raises when hn1 lacks a diphone the
    text needs (mbrola without ``-e``), so a gap in the table cannot pass silently."""
    phonemes = wav.with_suffix(".pho")
    phonemes.write_text(retime(pho(text, path, speed=speed, pitch=pitch)))
    done = _mbrola(phonemes, wav, lenient=False)
    phonemes.unlink()
    if done.returncode != 0 or "Warning" in done.stderr:
        raise MbrolaFailed(f"mbrola hn1 failed for {text!r}: {done.stderr.strip()}")


_VOICE_NAME = re.compile(r"mb-hn1(?:-p(\d{1,2}))?|mb-hn1-stock")
_built: set[Path] = set()


def is_voice(voice: str) -> bool:
    """A corpus voice name this module speaks: ``mb-hn1``, ``mb-hn1-pNN`` (espeak-ng pitch
    ``-p NN``, 0-99; 50 is the default) or ``mb-hn1-stock`` (espeak-ng's own table)."""
    return _VOICE_NAME.fullmatch(voice) is not None


def speak(voice: str, text: str, wav: Path, *, speed: int, path: Path | None = None) -> None:
    """``text`` in ``voice`` (``is_voice``) into ``wav`` at hn1's 16 kHz; builds ``path``
    (default ``ESPEAK_PATH``) first, once per process."""
    path = path or ESPEAK_PATH
    found = _VOICE_NAME.fullmatch(voice)
    if found is None:
        raise ValueError(f"mbrola-ko: not an hn1 voice: {voice!r}")
    if path not in _built:
        build(path)
        _built.add(path)
    if voice == STOCK_VOICE:
        subprocess.run(
            [
                "espeak-ng",
                f"--path={path}",
                "-v",
                STOCK_VOICE,
                "-s",
                str(speed),
                "-w",
                str(wav),
                text,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return
    pitch = int(found.group(1)) if found.group(1) else None
    synthesize(text, wav, path, speed=speed, pitch=pitch)


def unknown_diphones(text: str, path: Path = ESPEAK_PATH) -> list[str]:
    """The diphones MBROLA hn1 lacks for ``text`` (``a-q`` ...), found by running mbrola
    itself on espeak-ng's phonemes (without ``-e``: an unknown diphone is then an error)."""
    with tempfile.TemporaryDirectory() as tmp:
        phonemes, wav = Path(tmp) / "t.pho", Path(tmp) / "t.wav"
        phonemes.write_text(pho(text, path))
        strict = _mbrola(phonemes, wav, lenient=False)
        if strict.returncode == 0 and "Warning" not in strict.stderr:
            return []
        lenient = _mbrola(phonemes, wav, lenient=True)
    found = re.findall(r"Warning: (\S+) unknown", strict.stderr + lenient.stderr)
    return sorted(set(found)) or [strict.stderr.strip() or f"mbrola exit {strict.returncode}"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=ESPEAK_PATH)
    parser.add_argument("--check", nargs="*", default=[CHECK_TEXT], help="texts to check")
    parser.add_argument("--print-table", action="store_true", help="print the table and exit")
    parser.add_argument("--say", help="speak this text into --out (after building)")
    parser.add_argument("--out", type=Path, default=Path("mbrola-ko.wav"))
    parser.add_argument("--speed", type=int)
    parser.add_argument("--pitch", type=int)
    args = parser.parse_args(argv)
    if args.print_table:
        sys.stdout.write(phtrans_source())
        return 0
    try:
        build(args.path)
    except MbrolaMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.say:
        synthesize(args.say, args.out.resolve(), args.path, speed=args.speed, pitch=args.pitch)
        print(f"mbrola-ko: {args.out}")
        return 0
    bad = 0
    for text in args.check:
        unknown = unknown_diphones(text, args.path)
        if unknown:
            bad += 1
            print(f"mbrola-ko: unknown diphones for {text!r}: {' '.join(unknown)}", file=sys.stderr)
    state = (
        f"{bad} of {len(args.check)} texts with unknown diphones" if bad else "no unknown diphone"
    )
    print(
        f"mbrola-ko: {VOICE} in {args.path} ({len(rules())} rules; {state}); speak with "
        "scripts/mbrola-ko --say TEXT --out FILE.wav (espeak-ng --pho piped into mbrola -R)"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
