"""AMD accuracy and time to decision on the labelled corpus, on both switches.

    scripts/amd-corpus                       # once: var/amd-corpus (192 greetings, 48 held out)
    flock -o /tmp/asterisk-sandbox.lock sh -c \\
      'scripts/asterisk-sandbox start && .venv/bin/python -m bench amd'

Asterisk: each greeting is a real call through the sandbox trunk to the carrier's 77ID
number (which plays corpus file ID), originated with ``Amd()`` (app_amd in ``[engine-amd]``).
FreeSWITCH: the fake ESL peer streams the same WAV over ``unicast`` (8 kHz L16, a PCMU call)
to the real FreeSWITCH driver, whose engine-side detector decides. Both read the AmdResult
event; "time to decision" is from the leg's Answered event to its AmdResult, on the engine's
clock. ``AMD_SPLIT=tuning`` runs the tuning half instead (for choosing parameters only).

Parameters: Asterisk's are the sandbox's installed amd.conf (recorded in the report);
the FreeSWITCH side uses ``AmdParams()`` (= telephony-config/asterisk/amd.conf), or the file
``AMD_CONF`` names. When both switches run, the two must be equal (else the run stops: a
comparison at different settings would say nothing).

``AMD_PROFILE=fast`` (or ``accurate``) runs a campaign's AMD profile instead, per call as a
campaign's calls get it (``AmdSettings(profile=...).overrides()``, the runner's code): AMD()'s
arguments on Asterisk, the detector's per-leg parameters on FreeSWITCH, with the sandbox's
amd.conf left alone. Report: reports/amd-<profile>.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.campaigns.model import AmdSettings
from engine.pbx.base import (
    Amd,
    AmdResult,
    Answered,
    DialTarget,
    HungUp,
    OriginateFailed,
    OriginateRequest,
    PbxDriver,
    PbxEvent,
)
from engine.speech.amd import AmdOverrides, AmdParams, parse_amd_conf

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("AMD_CORPUS_DIR", ROOT / "var" / "amd-corpus"))
#: Calls in flight at once (each lasts up to ~8 s).
CONCURRENCY = 4
#: From originate to AmdResult: ring + the analysis (5 s) + margin.
CALL_TIMEOUT_S = 20.0


@dataclass
class Outcome:
    id: str
    label: str
    status: str
    cause: str
    decision_s: float | None
    #: When the greeting's speech ended, after the answer (labels.json: lead-in + speech).
    speech_end_s: float = 0.0


#: Where scripts/asterisk-sandbox installs the corpus (sounds/en is a link to this directory).
SANDBOX_SOUNDS = (
    Path(os.environ.get("ASTERISK_SANDBOX_DIR", "/var/cache/telephony-engine/asterisk-22"))
    / "root/usr/share/asterisk/sounds/en_US_f_Allison/amd-corpus"
)


SANDBOX_AMD_CONF = SANDBOX_SOUNDS.parents[5] / "etc/asterisk/amd.conf"


def _params() -> tuple[AmdParams, AmdParams | None]:
    """The FreeSWITCH side's parameters, and the Asterisk sandbox's (None: not readable)."""
    conf = os.environ.get("AMD_CONF")
    fs = parse_amd_conf(Path(conf).read_text(), source=conf) if conf else AmdParams()
    if not SANDBOX_AMD_CONF.exists():
        return fs, None
    return fs, parse_amd_conf(SANDBOX_AMD_CONF.read_text(), source=str(SANDBOX_AMD_CONF))


def _labels(split: str) -> list[dict[str, Any]]:
    path = CORPUS / "labels.json"
    # An older corpus (without the v4 held-out set) has a held-out part that was studied while
    # tuning: rebuild it rather than report on it.
    if not path.exists() or {x.get("set") for x in json.loads(path.read_text())} != {
        "v1",
        "v2",
        "v3",
        "v4",
    }:
        # Deterministic, a second or two: build it rather than fail.
        from scripts.amd_corpus import main as build_corpus

        if build_corpus(["--out", str(CORPUS)]) != 0:
            raise SystemExit("bench.amd: could not build the corpus (espeak-ng and sox needed)")
    return [x for x in json.loads(path.read_text()) if x["split"] == split]


def _check_sandbox_has(items: list[dict[str, Any]]) -> None:
    """The 77ID numbers play files installed at `scripts/asterisk-sandbox start`; without them
    every call would end NOTSURE and look like a detector failure."""
    missing = [x["id"] for x in items if not (SANDBOX_SOUNDS / f"{x['id']}.wav").exists()]
    if SANDBOX_SOUNDS.parent.exists() and missing:
        raise SystemExit(
            f"bench.amd: the sandbox lacks corpus files {missing[:5]}... in {SANDBOX_SOUNDS}; "
            "run scripts/asterisk-sandbox start (under the lock) after scripts/amd-corpus"
        )


class _Calls:
    """Routes one driver's events to the call waiting for them."""

    def __init__(self, driver: PbxDriver, then: Amd) -> None:
        self.driver = driver
        self.then = then
        self.waiting: dict[str, asyncio.Queue[PbxEvent]] = {}
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        async for ev in self.driver.events():
            queue = self.waiting.get(ev.call_id)
            if queue is not None:
                queue.put_nowait(ev)

    async def one(
        self, item: dict[str, Any], target: DialTarget, variables: dict[str, str]
    ) -> Outcome:
        call_id = str(uuid.uuid4())
        queue: asyncio.Queue[PbxEvent] = asyncio.Queue()
        self.waiting[call_id] = queue
        answered: float | None = None
        try:
            await self.driver.originate(
                OriginateRequest(call_id, target, self.then, timeout_s=10, variables=variables)
            )
            deadline = time.monotonic() + CALL_TIMEOUT_S
            while True:
                ev = await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))
                if isinstance(ev, Answered):
                    answered = ev.ts
                elif isinstance(ev, AmdResult):
                    took = ev.ts - answered if answered is not None else None
                    end = (item["lead_ms"] + item["speech_ms"]) / 1000
                    return Outcome(item["id"], item["label"], ev.status, ev.cause, took, end)
                elif isinstance(ev, HungUp | OriginateFailed):
                    return Outcome(item["id"], item["label"], "NORESULT", ev.type, None)
        except TimeoutError:
            return Outcome(item["id"], item["label"], "NORESULT", "timeout", None)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.driver.hangup(call_id), 5)
            self.waiting.pop(call_id, None)

    async def close(self) -> None:
        self.task.cancel()


async def _run_all(
    items: list[dict[str, Any]], one: Callable[[dict[str, Any]], Awaitable[Outcome]]
) -> list[Outcome]:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def guarded(item: dict[str, Any]) -> Outcome:
        async with sem:
            return await one(item)

    return list(await asyncio.gather(*(guarded(x) for x in items)))


async def _asterisk(items: list[dict[str, Any]], then: Amd) -> list[Outcome]:
    from engine.pbx.asterisk.driver import AsteriskDriver

    driver = AsteriskDriver(
        name="sandbox",
        host="127.0.0.1",
        port=5038,
        username="engine",
        secret="enginesecret",
        action_timeout_s=5.0,
    )
    await driver.start()
    try:
        await driver.wait_up(15)
        calls = _Calls(driver, then)
        out = await _run_all(
            items, lambda x: calls.one(x, DialTarget("trunk", "self-trunk", f"77{x['id']}"), {})
        )
        await calls.close()
        return out
    finally:
        await driver.stop()


async def _freeswitch(items: list[dict[str, Any]], params: AmdParams, then: Amd) -> list[Outcome]:
    from engine.pbx.freeswitch.driver import FreeSwitchDriver
    from tests.fakes.fake_esl import FakeFreeSwitch

    async with FakeFreeSwitch(time_scale=0.1) as fs:
        for x in items:
            fs.tap_audio[f"690{x['id']}"] = CORPUS / f"{x['id']}.wav"
        driver = FreeSwitchDriver("fs-fake", fs.host, fs.port, fs.password, amd_params=params)
        await driver.start()
        try:
            await driver.wait_up(10)
            calls = _Calls(driver, then)
            pcmu = {"absolute_codec_string": "PCMU"}
            out = await _run_all(
                items, lambda x: calls.one(x, DialTarget("trunk", "carrier", f"690{x['id']}"), pcmu)
            )
            await calls.close()
            return out
        finally:
            await driver.stop()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    humans = [o for o in outcomes if o.label == "human"]
    machines = [o for o in outcomes if o.label == "machine"]
    right = sum(1 for o in outcomes if (o.status == "HUMAN") == (o.label == "human"))
    human_times = [o.decision_s for o in humans if o.status == "HUMAN" and o.decision_s is not None]
    # As the campaign runner routes them (engine/campaigns/outcomes.py): all but MACHINE go
    # to a person, NOTSURE included.
    to_person = [
        o.decision_s
        for o in humans
        if o.status not in ("MACHINE", "NORESULT") and o.decision_s is not None
    ]
    # The FCC's clock (47 CFR 64.1200(a)(7)): two seconds from the end of the called
    # person's greeting, not from the answer.
    after_hello = [
        o.decision_s - o.speech_end_s
        for o in humans
        if o.status not in ("MACHINE", "NORESULT") and o.decision_s is not None
    ]
    return {
        "greetings": len(outcomes),
        "humans": len(humans),
        "machines": len(machines),
        "accuracy": round(right / len(outcomes), 3) if outcomes else None,
        # Right as the campaign routes it: MACHINE for a machine, anything else for a person.
        "accuracy_as_routed": round(
            sum(1 for o in outcomes if (o.status == "MACHINE") == (o.label == "machine"))
            / len(outcomes),
            3,
        )
        if outcomes
        else None,
        "humans_taken_for_machines": sum(1 for o in humans if o.status == "MACHINE"),
        "humans_taken_for_machines_pct": round(
            100 * sum(1 for o in humans if o.status == "MACHINE") / max(1, len(humans)), 1
        ),
        "machines_taken_for_humans": sum(1 for o in machines if o.status == "HUMAN"),
        "notsure": sum(1 for o in outcomes if o.status == "NOTSURE"),
        "no_result": sum(1 for o in outcomes if o.status in ("NORESULT", "HANGUP")),
        "human_decision_p50_s": _round(_pct(human_times, 0.50)),
        "human_decision_p95_s": _round(_pct(human_times, 0.95)),
        "humans_notsure": sum(1 for o in humans if o.status == "NOTSURE"),
        "machines_passed_to_a_person": sum(
            1 for o in machines if o.status not in ("MACHINE", "NORESULT")
        ),
        "human_to_person_p50_s": _round(_pct(to_person, 0.50)),
        "human_to_person_p95_s": _round(_pct(to_person, 0.95)),
        "human_to_person_after_hello_p95_s": _round(_pct(after_hello, 0.95)),
        "human_speech_end_p95_s": _round(_pct([o.speech_end_s for o in humans], 0.95)),
        "targets": {"humans_taken_for_machines_pct_max": 2.0, "human_decision_p95_s_max": 2.0},
        "calls": [o.__dict__ for o in outcomes],
    }


def _agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Per greeting: same status on both switches, and how far apart the decisions came."""
    by_id = {c["id"]: c for c in b}
    same = [c["id"] for c in a if by_id[c["id"]]["status"] == c["status"]]
    gaps = [
        abs(c["decision_s"] - by_id[c["id"]]["decision_s"])
        for c in a
        if c["decision_s"] is not None and by_id[c["id"]]["decision_s"] is not None
    ]
    return {
        "same_status": len(same),
        "of": len(a),
        "max_decision_gap_s": _round(max(gaps) if gaps else None),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def run() -> dict[str, Any]:
    split = os.environ.get("AMD_SPLIT", "heldout")
    items = _labels(split)
    only = os.environ.get("AMD_SWITCHES", "asterisk,freeswitch").split(",")
    fs_params, ast_params = _params()
    profile = os.environ.get("AMD_PROFILE", "switch")
    # As a campaign's calls get it (engine/campaigns/dialer.py): None is the switch's own.
    overrides = AmdSettings.model_validate({"profile": profile}).overrides()
    then = Amd(overrides)
    if overrides is not None:
        fs_params = overrides.apply(fs_params)
        ast_params = None if ast_params is None else overrides.apply(ast_params)
    if "asterisk" in only and "freeswitch" in only and fs_params != ast_params:
        raise SystemExit(
            f"bench.amd: the sandbox's {SANDBOX_AMD_CONF} is {ast_params}, the FreeSWITCH side "
            f"would use {fs_params}: set AMD_CONF to the sandbox's file or run one switch"
        )
    result: dict[str, Any] = {
        "split": split,
        "corpus": str(CORPUS),
        "profile": profile,
        "amd_arguments": (overrides or AmdOverrides()).amd_arguments(),
    }
    if "asterisk" in only:
        _check_sandbox_has(items)
        result["asterisk_params"] = None if ast_params is None else asdict(ast_params)
        result["asterisk"] = summarize(asyncio.run(_asterisk(items, then)))
    if "freeswitch" in only:
        result["freeswitch_params"] = asdict(fs_params)
        # The driver keeps amd.conf's parameters; the profile rides on each call (then).
        base = fs_params if overrides is None else _params()[0]
        result["freeswitch_fake_unicast"] = summarize(asyncio.run(_freeswitch(items, base, then)))
    if "asterisk" in result and "freeswitch_fake_unicast" in result:
        result["switches_agree"] = _agreement(
            result["asterisk"]["calls"], result["freeswitch_fake_unicast"]["calls"]
        )
    name = "amd" if profile == "switch" else f"amd-{profile}"
    out = ROOT / "reports" / (f"{name}.json" if split == "heldout" else f"{name}-{split}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    res = run()
    for key in ("asterisk", "freeswitch_fake_unicast"):
        if key in res:
            print(key, json.dumps({k: v for k, v in res[key].items() if k != "calls"}, indent=1))
    if "switches_agree" in res:
        print("switches_agree", json.dumps(res["switches_agree"]))
