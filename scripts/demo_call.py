"""Implementation of scripts/demo-call (kept in Python so it shares the venv)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid

import aiohttp

from engine.config import load_config


async def main() -> int:
    parser = argparse.ArgumentParser(description="Place one demo call and show its life.")
    parser.add_argument("number", nargs="?", default="1001", help="carrier number (1XXX..6XXX)")
    parser.add_argument("trunk", nargs="?", default="self-trunk")
    parser.add_argument("--config", default="telephony-config/engine.toml")
    parser.add_argument("--flow", help="run this IVR flow after answer instead of parking")
    args = parser.parse_args()

    cfg = load_config(args.config)
    base = f"http://{cfg.api.host}:{cfg.api.port}/v1"
    token = cfg.api.tokens[0].get_secret_value()
    headers = {"Authorization": f"Bearer {token}"}
    then = {"kind": "ivr", "flow": args.flow} if args.flow else {"kind": "park"}
    body = {"to": args.number, "trunk": args.trunk, "then": then, "timeout_s": 10}

    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/health") as resp:
            print("health:", json.dumps(await resp.json()))
        async with http.ws_connect(f"{base}/events") as ws:
            async with http.post(
                f"{base}/calls", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
            ) as resp:
                call = await resp.json()
                if resp.status >= 300:
                    print(f"originate refused ({resp.status}):", json.dumps(call), file=sys.stderr)
                    return 1
            call_id = call["call_id"]
            print(f"placed call {call_id} to {args.number} via {args.trunk}")
            async for msg in ws:
                data = json.loads(msg.data)
                event = data.get("event", {})
                if event.get("call_id") != call_id:
                    continue
                print(f"  #{data['seq']:<6} {json.dumps(event)}")
                if event.get("type") == "CallStateChanged" and event.get("state") == "ended":
                    break
        await asyncio.sleep(0.2)
        async with http.get(f"{base}/cdrs", params={"call_id": call_id}) as resp:
            print("CDR:", json.dumps(await resp.json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
