"""``make bench``: run every benchmark, print the figures, write reports/bench.json.

Benchmarks print and record numbers; they never pass or fail a build (tests
never assert on speed). Each runs in this order so the slow, multi-process
ones do not disturb the single-core codec figures.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHES = [
    "bench.ami_codec",
    "bench.ami_burst",
    "bench.esl_codec",
    # CPU per call of the registry journal (crash safety of calls not yet in Redis).
    "bench.registry_journal",
    # The IVR's intent/emotion baselines on their held-out set (no I/O).
    "bench.ivr_nlu",
    "bench.trunks",
    "bench.failover",
    "bench.api_latency",
    "bench.pacing",
    "bench.acd_routing",
    "bench.acd_latency",
    "bench.acd_sim",
    # One /v1/metrics scrape at 50 queues / 500 agents / full KPI history (no I/O).
    "bench.metrics_scrape",
    # The 1,000,000-row contact import, then the hopper on the campaign it leaves.
    "bench.contacts_import",
    "bench.hopper",
    # 1,000,000 calls over 30 days seeded by COPY; report query time for the 30 days.
    "bench.reports",
    # Places real calls on the shared sandbox (77NN corpus numbers) and fake-FreeSWITCH calls.
    "bench.amd",
    # Real calls on the sandbox (76NNN ASR corpus numbers) into the AudioSocket tap.
    "bench.asr",
    # Reads the live campaign test's report (reports/campaign-live.json).
    "bench.campaign_sim",
    # Encryption throughput; hangup -> RecordingReady of 5-minute calls (fake FreeSWITCH).
    "bench.recording_crypto",
    # One person's rows among 1,000,000 CDRs and 400,000 contacts: export read, erase.
    "bench.data_subjects",
    # Engine process + fake carrier: webhook latency at 100 events/s and a 60 s outage.
    "bench.webhooks",
    # The wallboard in chromium: 500 agents, 50 queues, 200 events/s (engine + fake carrier).
    "bench.wallboard",
    # One, two and three engines (processes) on shared storage, each with its own fake
    # Asterisk: calls/s and events/s at API p99 < 50 ms, CPU per call, the forwarding hop.
    "bench.capacity",
    # Ten SIGKILLs of a switch's owner (two engine processes, fake FreeSWITCH): takeover time.
    "bench.takeover",
    # Last: it drives the shared Asterisk sandbox with 200 real calls.
    "bench.cpu_per_call",
]


def main(argv: list[str]) -> int:
    wanted = [b for b in BENCHES if not argv or b.rsplit(".", 1)[1] in argv]
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": {},
    }
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            print(f"{name}: not available ({err})", file=sys.stderr)
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        result = module.run()
        report["results"][name] = result
        print(json.dumps(result, indent=2, default=str), flush=True)
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    out = ROOT / "reports" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
