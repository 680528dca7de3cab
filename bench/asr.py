"""ASR acceptance figures on the labelled corpus, through the real Asterisk.

    scripts/asr-corpus                       # once: var/asr-corpus (368 utterances, 4 splits)
    flock -o /tmp/asterisk-sandbox.lock .venv/bin/python -m bench asr

The run copies the corpus files it plays into the sandbox's sounds directory (what the
carrier's 76NNN plays) when they are missing or changed.

Each utterance is a real call: AMI Originate of ``PJSIP/76NNN@self-trunk`` (the sandbox
carrier answers and plays corpus file NNN) whose application is ``AudioSocket(<uuid>,
<engine>)``, so the carrier's audio reaches the engine's AudioSocket server exactly as a
caller's would, and :func:`engine.speech.listen.listen` recognises it (English menus and
sentences with pocketsphinx, Korean with vosk). Menu items are recognised with the menu's
keywords; free sentences without. Latency: from the arrival of the last voiced frame (end of
speech as the engine hears it) to the result, so it includes the endpointer's silence wait.

Then the concurrency sweep: K menu utterances at once (K = 1, 2, 4, 6, 8), pools of K warm
workers, for the p50 latency at each K and the CPU seconds per recognition (the workers'
utime+stime from /proc). ``ASR_SPLIT=tuning`` runs the tuning half (to choose thresholds),
``ASR_SPLIT=tuning,heldout`` both older halves (round 3's training), ``ASR_SPLIT=fresh`` the
split made unseen for round 3 (reports/asr-fresh.json; ``fresh2`` to ``fresh6`` the
later ones, ``mbrola1`` the first spoken by MBROLA voices, English only, ``mbrola2`` the
Korean one, ``mbrola3`` the second Korean one and ``mbrola4`` the second English one, both
unseen: round 10);
``ASR_SOURCE=offline`` plays the files to listen() at real-time pace without a switch
(reports/asr-offline.json); ``ASR_LANGS=en`` / ``ASR_SWEEP=0`` narrow the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.pbx.asterisk.audiosocket import AudioSocketServer
from engine.speech.asr.base import SpeechResult
from engine.speech.listen import Pools, listen

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("ASR_CORPUS_DIR", ROOT / "var" / "asr-corpus"))
SANDBOX_SOUNDS = (
    Path(os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22"))
    / "root/usr/share/asterisk/sounds/en_US_f_Allison/asr-corpus"
)
PLUGIN_OF = {"en": "pocketsphinx", "ko": "vosk"}
CONCURRENCY = 2
SWEEP = (1, 2, 4, 6, 8)


def _labels(split: str) -> list[dict[str, Any]]:
    """The items of ``split``: one split, or several joined by commas ("tuning,heldout")."""
    path = CORPUS / "labels.json"
    if not path.exists():
        from scripts.asr_corpus import main as build_corpus

        if build_corpus(["--out", str(CORPUS)]) != 0:
            raise SystemExit("bench.asr: could not build the corpus (espeak-ng and sox needed)")
    wanted = set(split.split(","))
    items = [x for x in json.loads(path.read_text()) if x["split"] in wanted]
    missing = wanted - {x["split"] for x in items}
    if missing:
        raise SystemExit(
            f"bench.asr: ASR_SPLIT {split!r}: no items of {sorted(missing)} in {path}; "
            "expected tuning, heldout, fresh, fresh2 to fresh6, mbrola1 to mbrola4 "
            "(rebuild with scripts/asr-corpus)"
        )
    return items


def keywords_for(items: Sequence[dict[str, Any]], lang: str) -> list[str]:
    seen: list[str] = []
    for x in items:
        if x["lang"] == lang and x["keyword"] and x["keyword"] not in seen:
            seen.append(x["keyword"])
    return seen


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(word edits, reference words): Levenshtein over words."""
    r, h = ref.split(), hyp.split()
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1], len(r)


def _cpu_s(pids: Sequence[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class PacedSource:
    """A corpus file as a caller would send it, 20 ms per frame in real time, without a
    switch (``ASR_SOURCE=offline``: the recogniser's own figures, no SIP/RTP/AudioSocket)."""

    def __init__(self, path: Path) -> None:
        from engine.speech.wav import decode_wav

        pcm = decode_wav(path.read_bytes())
        self._samples = pcm.samples
        self.rate = pcm.rate
        self._step = pcm.rate // 50
        self._at = 0
        self._start: float | None = None

    @property
    def closed(self) -> bool:
        return self._at >= len(self._samples)

    async def read(self, timeout_s: float) -> Any:
        if self.closed:
            return None
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        k = self._at // self._step
        delay = self._start + (k + 1) * 0.020 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = self._samples[self._at : self._at + self._step]
        self._at += self._step
        return frame


class OfflineRig:
    async def __aenter__(self) -> OfflineRig:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def one(
        self, item: dict[str, Any], pools: Pools, keywords: list[str] | None
    ) -> SpeechResult:
        return await listen(
            PacedSource(CORPUS / f"{item['id']}.wav"),
            pools=pools,
            plugin=PLUGIN_OF[item["lang"]],
            keywords=keywords,
            no_input_s=5,
            max_s=10,
        )


class Rig:
    def __init__(self) -> None:
        from engine.pbx.asterisk.driver import AsteriskDriver

        self.driver = AsteriskDriver(
            name="sandbox",
            host="127.0.0.1",
            port=5038,
            username="engine",
            secret="enginesecret",
            action_timeout_s=5.0,
        )
        self.server = AudioSocketServer("127.0.0.1", 0)

    async def __aenter__(self) -> Rig:
        await self.server.start()
        await self.driver.start()
        await self.driver.wait_up(15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.driver.stop()
        await self.server.stop()

    async def one(
        self, item: dict[str, Any], pools: Pools, keywords: list[str] | None
    ) -> SpeechResult:
        stream = self.server.expect(str(uuid.uuid4()))
        await self.driver.client.send_action(
            "Originate",
            [
                ("Channel", f"PJSIP/76{item['id']}@self-trunk"),
                ("Application", "AudioSocket"),
                ("Data", self.server.application_data(stream)),
                ("Timeout", "10000"),
                ("Async", "true"),
            ],
            timeout_s=5,
        )
        try:
            await stream.wait_connected(15)
            return await listen(
                stream,
                pools=pools,
                plugin=PLUGIN_OF[item["lang"]],
                keywords=keywords,
                no_input_s=5,
                max_s=10,
            )
        finally:
            await stream.hangup()
            self.server.forget(stream.call_uuid)


def install_corpus(items: Sequence[dict[str, Any]]) -> None:
    """Copy the corpus files the run plays into the sandbox's sounds (what 76NNN plays), when
    missing or different: no sandbox restart, so other work on the sandbox goes on."""
    if not SANDBOX_SOUNDS.parent.is_dir():
        raise SystemExit(f"bench.asr: no sandbox sounds directory {SANDBOX_SOUNDS.parent}")
    SANDBOX_SOUNDS.mkdir(exist_ok=True)
    for x in items:
        src, dst = CORPUS / f"{x['id']}.wav", SANDBOX_SOUNDS / f"{x['id']}.wav"
        data = src.read_bytes()
        if not dst.exists() or dst.read_bytes() != data:
            dst.write_bytes(data)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def summarize(items: list[dict[str, Any]], results: list[SpeechResult]) -> dict[str, Any]:
    rows = []
    menu_right = menu_n = 0
    edits = words = 0
    lat: list[float] = []
    for x, r in zip(items, results, strict=True):
        rows.append(
            {
                "id": x["id"],
                "voice": x["voice"],
                "kind": x["kind"],
                "expected": x["keyword"] or x["text"],
                "status": r.status.value,
                "keyword": r.keyword,
                "text": r.text,
                "confidence": r.confidence,
                "latency_s": None if r.latency_s is None else round(r.latency_s, 3),
            }
        )
        if r.latency_s is not None:
            lat.append(r.latency_s)
        if x["kind"] == "menu":
            menu_n += 1
            menu_right += int(r.ok and r.keyword == x["keyword"])
        else:
            e, n = wer(x["text"], r.text)
            edits, words = edits + e, words + n
    return {
        "utterances": len(items),
        "menu_items": menu_n,
        "menu_accuracy": round(menu_right / menu_n, 3) if menu_n else None,
        "menu_low_confidence_or_no_match": sum(
            1 for x, r in zip(items, results, strict=True) if x["kind"] == "menu" and not r.ok
        ),
        "free_items": len(items) - menu_n,
        "wer": round(edits / words, 3) if words else None,
        "latency_p50_s": _pct(lat, 0.5),
        "latency_p95_s": _pct(lat, 0.95),
        "targets": {"menu_accuracy_min": 0.95, "latency_p95_s_max": 0.5},
        "results": rows,
    }


async def _run_lang(
    rig: Rig | OfflineRig, items: list[dict[str, Any]], lang: str
) -> dict[str, Any]:
    mine = [x for x in items if x["lang"] == lang]
    kws = keywords_for(mine, lang)
    pools = Pools(size=CONCURRENCY)
    await pools.get(PLUGIN_OF[lang]).warm()
    sem = asyncio.Semaphore(CONCURRENCY)

    async def guarded(x: dict[str, Any]) -> SpeechResult:
        async with sem:
            return await rig.one(x, pools, kws if x["kind"] == "menu" else None)

    async def off_menu(x: dict[str, Any]) -> SpeechResult:
        async with sem:
            return await rig.one(x, pools, kws)

    try:
        results = list(await asyncio.gather(*(guarded(x) for x in mine)))
        # Rejection: the free sentences again, now against the menu's keywords. Each one
        # the recogniser accepts (status ok) would send a caller who said something else
        # down a menu branch instead of the retry.
        free = [x for x in mine if x["kind"] == "free"]
        rejected = list(await asyncio.gather(*(off_menu(x) for x in free)))
    finally:
        await pools.stop()
    return {
        "plugin": PLUGIN_OF[lang],
        "keywords": kws,
        **summarize(mine, results),
        "off_menu_items": len(free),
        "off_menu_accepted": sum(1 for r in rejected if r.ok),
        "off_menu_results": [
            {"id": x["id"], "status": r.status.value, "keyword": r.keyword, "conf": r.confidence}
            for x, r in zip(free, rejected, strict=True)
        ],
    }


async def _sweep(
    rig: Rig | OfflineRig, items: list[dict[str, Any]], lang: str
) -> list[dict[str, Any]]:
    menus = [x for x in items if x["lang"] == lang and x["kind"] == "menu"]
    kws = keywords_for(menus, lang)
    out: list[dict[str, Any]] = []
    for k in SWEEP:
        pools = Pools(size=k)
        pool = pools.get(PLUGIN_OF[lang])
        await pool.warm()
        pids = [w.proc.pid for w in pool._all]
        cpu0 = _cpu_s(pids)
        batch = menus[: max(k * 2, 6)]
        t0 = time.monotonic()
        results: list[SpeechResult] = []
        for at in range(0, len(batch), k):  # k calls at once, in waves
            results += await asyncio.gather(*(rig.one(x, pools, kws) for x in batch[at : at + k]))
        wall = time.monotonic() - t0
        cpu = _cpu_s(pids) - cpu0
        await pools.stop()
        lat = [r.latency_s for r in results if r.latency_s is not None]
        speech = sum(r.speech_s for r in results)
        out.append(
            {
                "concurrent": k,
                "recognitions": len(results),
                "latency_p50_s": _pct(lat, 0.5),
                "latency_p95_s": _pct(lat, 0.95),
                "cpu_s_per_recognition": round(cpu / len(results), 3),
                "cpu_s_per_speech_s": round(cpu / speech, 3) if speech else None,
                "wall_s": round(wall, 1),
            }
        )
    base = float(out[0]["latency_p50_s"] or 0.0)
    doubled = [
        int(r["concurrent"]) for r in out if base and float(r["latency_p50_s"] or 0) > 2 * base
    ]
    for r in out:
        r["latency_doubled"] = bool(doubled) and int(r["concurrent"]) >= doubled[0]
    return out


async def _main(split: str, langs: Sequence[str], sweep: bool, offline: bool) -> dict[str, Any]:
    items = _labels(split)
    result: dict[str, Any] = {
        "split": split,
        "corpus": str(CORPUS),
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "source": "offline-paced" if offline else "asterisk-audiosocket",
    }
    if offline:
        async with OfflineRig() as orig:
            for lang in langs:
                result[PLUGIN_OF[lang]] = await _run_lang(orig, items, lang)
                if sweep:
                    result[PLUGIN_OF[lang]]["concurrency"] = await _sweep(orig, items, lang)
        return result
    install_corpus(items)
    async with Rig() as rig:
        for lang in langs:
            result[PLUGIN_OF[lang]] = await _run_lang(rig, items, lang)
            if sweep:
                result[PLUGIN_OF[lang]]["concurrency"] = await _sweep(rig, items, lang)
    return result


def run() -> dict[str, Any]:
    split = os.environ.get("ASR_SPLIT", "heldout")
    langs = os.environ.get("ASR_LANGS", "en,ko").split(",")
    sweep = os.environ.get("ASR_SWEEP", "1") == "1"
    offline = os.environ.get("ASR_SOURCE", "asterisk") == "offline"
    result = asyncio.run(_main(split, langs, sweep, offline))
    name = "asr" if split == "heldout" else f"asr-{split.replace(',', '+')}"
    out = ROOT / "reports" / (f"{name}-offline.json" if offline else f"{name}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


if __name__ == "__main__":
    res = run()
    for plugin in PLUGIN_OF.values():
        if plugin in res:
            print(
                plugin,
                json.dumps(
                    {k: v for k, v in res[plugin].items() if k != "results"},
                    indent=1,
                    ensure_ascii=False,
                ),
            )
