"""Runs the doctor's probes concurrently, each under its own deadline, and prints one line per
finding: ``OK``, ``WARN``, ``FAIL`` (exit status 1) or ``SKIP``, with a fix for the others."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from engine.config import EngineConfig, load_config
from engine.core.config import AsteriskSwitch, FreeSwitchSwitch
from engine.core.errors import ConfigError
from engine.doctor import probes
from engine.doctor.verdicts import Finding, Status, exit_status, ok


async def diagnose(cfg: EngineConfig, timeout_s: float) -> list[Finding]:
    """Every probe at once; a probe that overruns its deadline (a few of its own timeouts: it
    makes several round trips) is one FAIL line, and the others still report."""
    groups: list[tuple[str, Awaitable[list[Finding]]]] = []
    for sw in cfg.switches:
        if isinstance(sw, AsteriskSwitch):
            groups.append((f"switch {sw.name}", probes.asterisk(sw, timeout_s)))
        elif isinstance(sw, FreeSwitchSwitch):
            groups.append((f"switch {sw.name}", probes.freeswitch(sw, timeout_s)))
    groups.append(("postgresql", probes.postgres(cfg, timeout_s)))
    groups.append(("redis", probes.redis(cfg, timeout_s)))
    # statvfs and access() block on a hung network mount: in a thread, with a deadline.
    groups.append(("local paths", asyncio.to_thread(probes.local_paths, cfg)))
    groups.append(("outbox", asyncio.to_thread(probes.outbox_dead_letters, cfg)))
    groups.append(("config files", asyncio.to_thread(probes.referenced_files, cfg)))
    deadline = 4 * timeout_s
    results = await asyncio.gather(*(_bounded(name, probe, deadline) for name, probe in groups))
    return [finding for group in results for finding in group]


async def _bounded(name: str, probe: Awaitable[list[Finding]], deadline: float) -> list[Finding]:
    try:
        return await asyncio.wait_for(probe, deadline)
    except TimeoutError:
        return [
            Finding(
                name,
                Status.FAIL,
                f"no answer within {deadline:g} s (its checks did not finish)",
                f"something accepts the connection or the call but never answers: check {name} "
                "from this host (firewall dropping packets, a hung mount), or raise --timeout",
            )
        ]
    except Exception as err:  # a probe's bug must not hide the other checks
        return [
            Finding(
                name,
                Status.FAIL,
                f"the check itself failed: {err!r}",
                "a bug in the doctor, not necessarily in the deployment: report it with this "
                f"line; check {name} by hand meanwhile",
            )
        ]


def report(findings: Sequence[Finding], out: TextIO) -> int:
    for finding in findings:
        print(finding.line(), file=out)
    counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    print(f"doctor: {summary}", file=out)
    return exit_status(findings)


def command(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        for line in err.lines():
            print(f"FAIL  config: {line}", file=sys.stdout)
        return 1
    findings = [ok("config", f"{args.config} is valid")]
    findings += asyncio.run(diagnose(cfg, args.timeout))
    return report(findings, sys.stdout)


def add_parser(sub: Callable[..., argparse.ArgumentParser], default_config: str) -> None:
    parser = sub(
        "doctor",
        help="check a deployment: switches, storage, clocks, disk, recordings, leases",
    )
    parser.add_argument("--config", default=default_config)
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds for each connection and request (default 5)",
    )
    parser.set_defaults(func=command)
