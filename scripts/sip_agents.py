"""Implementation of scripts/sip-agents (the phones themselves: tests/sip_agents.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from tests.sip_agents import MAX_AGENTS, MODES, AgentPhones, AgentSpec


def parse_agent(text: str) -> AgentSpec:
    """``agentN``, ``agentN=ring``, ``agentN=answer-hangup:<seconds>``."""
    name, _, mode_text = text.partition("=")
    mode, _, hold = (mode_text or "answer").partition(":")
    if mode not in MODES:
        raise argparse.ArgumentTypeError(f"{text!r}: mode must be one of {', '.join(MODES)}")
    try:
        hold_s = float(hold) if hold else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {hold!r} is not a number of seconds") from None
    try:
        return AgentSpec(name, mode, hold_s)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def specs_from(args: list[str]) -> list[AgentSpec]:
    if len(args) == 1 and args[0].isdigit():
        count = int(args[0])
        if not 1 <= count <= MAX_AGENTS:
            raise argparse.ArgumentTypeError(f"agent count {count}: expected 1..{MAX_AGENTS}")
        return [AgentSpec(f"agent{n}") for n in range(1, count + 1)]
    return [parse_agent(a) for a in args]


async def run(specs: list[AgentSpec]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AgentPhones(specs) as phones:
        for agent in phones:
            spec = agent.spec
            extra = f" hangs up after {spec.hold_s:g} s" if spec.mode == "answer-hangup" else ""
            print(f"{spec.name}: sip:{spec.name}@127.0.0.1:{spec.port} mode {spec.mode}{extra}")
        print("phones up; Ctrl-C stops them")
        shown = {agent.spec.name: 0 for agent in phones}
        while not stop.is_set():
            for agent in phones:
                steps = agent.steps()
                for step in steps[shown[agent.spec.name] :]:
                    print(f"{agent.spec.name}: {step.step} {step.sip_call_id} {step.detail}")
                shown[agent.spec.name] = len(steps)
                if not agent.running:
                    print(f"{agent.spec.name}: sipp exited", file=sys.stderr)
                    stop.set()
            # A display refresh, not a wait for a condition: the loop ends on the signal.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Run SIPp agent phones for the sandbox Asterisk (docs/sip-agents.md)."
    )
    parser.add_argument(
        "agents",
        nargs="+",
        help="a count (agent1..agentN, answering) or agentN[=answer|ring|answer-hangup:SECONDS]",
    )
    args = parser.parse_args()
    try:
        specs = specs_from(args.agents)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    asyncio.run(run(specs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
