"""Place one call per carrier outcome through the running engine and print a
table of what the API, the event stream and the CDR say about each.

    scripts/carrier-outcomes [CONFIG] [--json]      (with `make run` running)

A call the engine refuses (e.g. dead-trunk once its breaker is open: 503 trunks-unavailable)
is a row of its own with the HTTP status and error_id, not a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp

from engine.config import load_config

OUTCOMES = [
    ("1001", "self-trunk", "answered"),
    ("2001", "self-trunk", "busy"),
    ("3001", "self-trunk", "congestion"),
    ("4001", "self-trunk", "no answer"),
    ("5001", "self-trunk", "DTMF sent by far end"),
    ("6001", "self-trunk", "answering machine (AMD)"),
    ("1001", "dead-trunk", "dead trunk"),
]


async def one(http: aiohttp.ClientSession, base: str, number: str, trunk: str) -> dict[str, Any]:
    then: dict[str, Any] = {"kind": "park"}
    if number.startswith("6"):
        then = {"kind": "dialplan", "context": "engine-amd", "exten": "s"}
    body = {"to": number, "trunk": trunk, "then": then, "timeout_s": 5}
    async with http.post(f"{base}/calls", json=body) as resp:
        call = await resp.json()
        if resp.status >= 300 or "call_id" not in call:
            return {"refused": f"{resp.status} {call.get('error_id', '')}".strip(), "body": call}
    call_id = call["call_id"]
    for _ in range(600):
        async with http.get(f"{base}/calls/{call_id}") as resp:
            call = await resp.json()
        if call["state"] == "ended":
            break
        if number.startswith("6") and call.get("amd_status"):
            # A machine never hangs up by itself in time: the dialer drops it.
            async with http.delete(f"{base}/calls/{call_id}"):
                pass
        await asyncio.sleep(0.1)
    async with http.get(f"{base}/cdrs", params={"call_id": call_id}) as resp:
        cdrs = (await resp.json())["cdrs"]
    return {"call": call, "cdr": cdrs[0] if cdrs else None}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", default="telephony-config/engine.toml")
    ap.add_argument("--json", action="store_true", help="also print every call and CDR as JSON")
    args = ap.parse_args()
    cfg = load_config(args.config)
    base = f"http://{cfg.api.host}:{cfg.api.port}/v1"
    headers = {"Authorization": f"Bearer {cfg.api.tokens[0].get_secret_value()}"}
    rows = []
    async with aiohttp.ClientSession(headers=headers) as http:
        results = await asyncio.gather(*(one(http, base, n, t) for n, t, _ in OUTCOMES))
    print(
        f"{'outcome':<26}{'to':<6}{'trunk':<12}{'state':<7}{'cause':>6}{'sip':>5}  "
        f"{'cause_text':<28}{'dtmf':<6}{'amd':<8}{'CDR billsec':>11}"
    )
    for (number, trunk, label), res in zip(OUTCOMES, results, strict=True):
        if "refused" in res:
            print(f"{label:<26}{number:<6}{trunk:<12}refused by the API: {res['refused']}")
            rows.append(res)
            continue
        c, cdr = res["call"], res["cdr"]
        billsec = f"{cdr['billsec_s']:.2f}" if cdr else "no CDR"
        print(
            f"{label:<26}{number:<6}{trunk:<12}{c['state']:<7}{c['cause']!s:>6}"
            f"{c['sip_code']!s:>5}  {c['cause_text'][:27]:<28}{c['dtmf']:<6}"
            f"{c.get('amd_status') or '':<8}{billsec:>11}"
        )
        rows.append(res)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
