"""Fast development figures for the ASR method, on seen splits only, with no switch and no
real-time pacing: each corpus file goes through :func:`engine.speech.listen.listen` (the
endpointer, the worker pool, the plugin, the confidence policy) as fast as it decodes.

    ASR_DEV_SPLIT=tuning,fresh4 ASR_LANGS=en .venv/bin/python -m bench.asr_dev  # default: all SEEN

Prints menu-choice accuracy, off-menu acceptance and every miss per language, and writes
reports/asr-dev.json. Latency is not meaningful here (no pacing): bench/asr.py measures it.
Round 4 of docs/speech.md chose its settings with this on the seen splits.
``ASR_DEV_FREE=1`` decodes without the menu's grammar (what the model hears on its own).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from bench.asr import CORPUS, PLUGIN_OF, ROOT, _labels, keywords_for
from engine.speech.listen import Pools, listen
from engine.speech.source import ArraySource
from engine.speech.wav import decode_wav

#: Splits already reported on (round 7: fresh5 joined them; round 9: mbrola1, English only,
#: and mbrola2, Korean only, each after its one live run); fresh6 is unseen. The default run
#: stays the formant splits, so its figures compare with the earlier rounds';
#: ``ASR_DEV_SPLIT=mbrola1`` / ``mbrola2`` adds them.
SEEN = ("tuning", "heldout", "fresh", "fresh2", "fresh3", "fresh4", "fresh5", "mbrola1", "mbrola2")
DEFAULT = SEEN[: SEEN.index("mbrola1")]


async def _one(x: dict[str, Any], pools: Pools, kws: list[str] | None) -> dict[str, Any]:
    pcm = decode_wav((CORPUS / f"{x['id']}.wav").read_bytes())
    r = await listen(
        ArraySource(pcm.samples, pcm.rate),
        pools=pools,
        plugin=PLUGIN_OF[x["lang"]],
        keywords=kws,
        no_input_s=5,
        max_s=10,
    )
    return {
        "id": x["id"],
        "split": x["split"],
        "voice": x["voice"],
        "said": x["text"],
        "expected": x["keyword"],
        "status": r.status.value,
        "keyword": r.keyword,
        "text": r.text,
        "confidence": r.confidence,
        "alternatives": [[a.text, a.confidence] for a in r.alternatives],
    }


async def _lang(items: list[dict[str, Any]], lang: str, workers: int) -> dict[str, Any]:
    mine = [x for x in items if x["lang"] == lang]
    kws = keywords_for(mine, lang)
    pools = Pools(size=workers)
    await pools.get(PLUGIN_OF[lang]).warm()
    sem = asyncio.Semaphore(workers)

    # ASR_DEV_FREE=1: no grammar at all (the model's own language model), to see what the
    # model hears; a menu answer counts as heard when a word of its text starts with the
    # keyword (Korean particles attach to the word). Round 5 of docs/speech.md.
    free_decode = os.environ.get("ASR_DEV_FREE", "0") == "1"

    async def guarded(x: dict[str, Any]) -> dict[str, Any]:
        async with sem:
            # menus and off-menu sentences alike
            return await _one(x, pools, None if free_decode else kws)

    t0 = time.monotonic()
    try:
        rows = list(await asyncio.gather(*(guarded(x) for x in mine)))
    finally:
        await pools.stop()
    menus = [r for r in rows if r["expected"]]
    free = [r for r in rows if not r["expected"]]
    right = [r for r in menus if r["status"] == "ok" and r["keyword"] == r["expected"]]
    if free_decode:
        right = [r for r in menus if any(w.startswith(r["expected"]) for w in r["text"].split())]
    per_split: dict[str, list[int]] = {}
    for r in menus:
        s = per_split.setdefault(r["split"], [0, 0])
        s[0] += int(r in right)
        s[1] += 1
    return {
        "plugin": PLUGIN_OF[lang],
        "free_decode": free_decode,
        "menu_right": len(right),
        "menu_items": len(menus),
        "per_split": per_split,
        "menu_wrong": sum(1 for r in menus if r not in right and r["status"] == "ok"),
        "menu_retry": sum(1 for r in menus if r not in right and r["status"] != "ok"),
        "off_menu_accepted": sum(1 for r in free if r["status"] == "ok"),
        "off_menu_items": len(free),
        "seconds": round(time.monotonic() - t0, 1),
        "misses": [r for r in menus if r not in right],
        "off_menu_ok": [r for r in free if r["status"] == "ok"],
        "rows": rows,
    }


def main() -> None:
    split = os.environ.get("ASR_DEV_SPLIT", ",".join(DEFAULT))
    if any(s not in SEEN for s in split.split(",")):
        raise SystemExit(f"bench.asr_dev: seen splits only ({', '.join(SEEN)})")
    langs = os.environ.get("ASR_LANGS", "en,ko").split(",")
    workers = int(os.environ.get("ASR_DEV_WORKERS", "2"))
    items = _labels(split)
    out: dict[str, Any] = {"split": split, "loadavg_at_start": os.getloadavg()}
    for lang in langs:
        res = asyncio.run(_lang(items, lang, workers))
        out[res["plugin"]] = res
        print(
            f"{res['plugin']}: menu {res['menu_right']}/{res['menu_items']} "
            f"(wrong {res['menu_wrong']}, retry {res['menu_retry']}) {res['per_split']}, "
            f"off-menu accepted {res['off_menu_accepted']}/"
            f"{res['off_menu_items']} ({res['seconds']} s)"
        )
        if os.environ.get("ASR_DEV_VERBOSE", "1") == "1":
            for r in res["misses"]:
                print(
                    f"  miss {r['id']} {r['voice']:16} {r['said']!r} -> {r['status']} "
                    f"{r['text']!r} {r['confidence']} {r['alternatives'][:4]}"
                )
            for r in res["off_menu_ok"]:
                print(f"  off-menu ok {r['id']} {r['said']!r} -> {r['text']!r} {r['confidence']}")
    path = ROOT / "reports" / "asr-dev.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
