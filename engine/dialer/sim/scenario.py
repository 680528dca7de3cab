"""Scenario files for the pacing simulator (format: bench/pacing_scenarios/README.md).

Parsing is strict: every problem names the file, the key path and what was expected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.scenario_inputs import Dist as Dist
from engine.core.scenario_inputs import ScenarioError as ScenarioError


@dataclass(frozen=True)
class Amd:
    machine_detect: float
    human_false_positive: float
    human_decision_s: float
    greeting_s: float
    machine_decision_s: float
    undetected_machine_agent_s: float


@dataclass(frozen=True)
class Change:
    at_hour: float
    key: str
    value: float


@dataclass(frozen=True)
class Scenario:
    name: str
    agents: int
    shift_hours: float
    seeds: tuple[int, ...]
    live: float
    fast_fail: float
    machine: float
    fast_fail_s: Dist
    post_dial_delay_s: Dist
    ring_to_answer_s: Dist
    ring_timeout_s: float
    talk_s: Dist
    wrap_s: Dist
    abandon_window_s: float
    amd: Amd | None
    changes: tuple[Change, ...] = ()
    description: str = ""
    line_cap_per_agent: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shift_s(self) -> float:
        return self.shift_hours * 3600.0


CHANGE_KEYS = ("live", "fast_fail", "machine", "talk_mean_s", "agents")


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, path: str, expected: str, got: Any) -> None:
        self.problems.append(f"{path}: expected {expected}, got {got!r}")

    def number(self, obj: dict[str, Any], key: str, path: str, *, lo: float = 0.0) -> float:
        value = obj.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(f"{path}{key}", "a number", value)
            return lo
        if value < lo:
            self.fail(f"{path}{key}", f"a number >= {lo}", value)
            return lo
        return float(value)

    @staticmethod
    def _pair(params: Any, keys: tuple[str, str]) -> bool:
        return (
            isinstance(params, dict)
            and set(params) == set(keys)
            and all(
                isinstance(params[k], int | float)
                and not isinstance(params[k], bool)
                and math.isfinite(params[k])
                for k in keys
            )
        )

    def dist(self, value: Any, path: str) -> Dist:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0 or not math.isfinite(value):
                self.fail(path, "a non-negative constant", value)
                return Dist("const", 0.0)
            return Dist("const", float(value))
        if isinstance(value, dict) and len(value) == 1:
            if "uniform" in value:
                pair = value["uniform"]
                if (
                    isinstance(pair, list)
                    and len(pair) == 2
                    and all(isinstance(x, int | float) and not isinstance(x, bool) for x in pair)
                    and 0 <= pair[0] <= pair[1]
                ):
                    return Dist("uniform", float(pair[0]), float(pair[1]))
                self.fail(f"{path}.uniform", "[a, b] with 0 <= a <= b", pair)
                return Dist("const", 0.0)
            if "lognormal" in value:
                params = value["lognormal"]
                ok = (
                    isinstance(params, dict)
                    and set(params) == {"mean", "sd"}
                    and all(
                        isinstance(params[k], int | float) and not isinstance(params[k], bool)
                        for k in ("mean", "sd")
                    )
                    and params["mean"] > 0
                    and params["sd"] >= 0
                )
                if ok:
                    return Dist("lognormal", float(params["mean"]), float(params["sd"]))
                self.fail(f"{path}.lognormal", '{"mean": m > 0, "sd": s >= 0}', params)
                return Dist("const", 0.0)
            if "gamma" in value:
                params = value["gamma"]
                if self._pair(params, ("mean", "sd")) and params["mean"] > 0 and params["sd"] >= 0:
                    return Dist("gamma", float(params["mean"]), float(params["sd"]))
                self.fail(f"{path}.gamma", '{"mean": m > 0, "sd": s >= 0}', params)
                return Dist("const", 0.0)
            if "pareto" in value:
                params = value["pareto"]
                if (
                    self._pair(params, ("mean", "alpha"))
                    and params["mean"] > 0
                    and params["alpha"] > 1
                ):
                    return Dist("pareto", float(params["mean"]), float(params["alpha"]))
                # alpha <= 1 has no finite mean: a talk time "on average infinite" is a typo.
                self.fail(f"{path}.pareto", '{"mean": m > 0, "alpha": a > 1}', params)
                return Dist("const", 0.0)
        self.fail(path, DIST_FORMS, value)
        return Dist("const", 0.0)


DIST_FORMS = (
    'a number, {"uniform": [a, b]}, {"lognormal": {"mean": m, "sd": s}}, '
    '{"gamma": {"mean": m, "sd": s}} or {"pareto": {"mean": m, "alpha": a}}'
)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    r = _Reader(source)
    if not isinstance(data, dict):
        raise ScenarioError(
            source, [f"top level: expected a JSON object, got {type(data).__name__}"]
        )
    for key in (
        "agents",
        "shift_hours",
        "dial_outcomes",
        "fast_fail_s",
        "post_dial_delay_s",
        "ring_to_answer_s",
        "ring_timeout_s",
        "talk_s",
        "wrap_s",
        "abandon_window_s",
    ):
        if key not in data:
            r.problems.append(f"{key}: required key is missing")
    if r.problems:
        raise ScenarioError(source, r.problems)
    agents = data["agents"]
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 0:
        r.fail("agents", "a non-negative integer", agents)
        agents = 0
    shift_hours = r.number(data, "shift_hours", "")
    if shift_hours <= 0:
        r.fail("shift_hours", "a positive number", data["shift_hours"])
    seeds_raw = data.get("seeds", [1])
    seeds: tuple[int, ...] = ()
    if isinstance(seeds_raw, list) and all(
        isinstance(s, int) and not isinstance(s, bool) for s in seeds_raw
    ):
        seeds = tuple(seeds_raw)
    else:
        r.fail("seeds", "a list of integers", seeds_raw)
    outcomes = data["dial_outcomes"]
    live = fast_fail = machine = 0.0
    if isinstance(outcomes, dict):
        live = r.number(outcomes, "live", "dial_outcomes.")
        fast_fail = r.number(outcomes, "fast_fail", "dial_outcomes.")
        machine = r.number(outcomes, "machine", "dial_outcomes.") if "machine" in outcomes else 0.0
        if live + fast_fail + machine > 1.0 + 1e-9:
            r.fail("dial_outcomes", "live + fast_fail + machine <= 1", outcomes)
    else:
        r.fail("dial_outcomes", "an object with live, fast_fail, machine", outcomes)
    amd_raw = data.get("amd")
    amd: Amd | None = None
    if amd_raw is not None:
        if isinstance(amd_raw, dict):
            amd = Amd(
                machine_detect=r.number(amd_raw, "machine_detect", "amd."),
                human_false_positive=r.number(amd_raw, "human_false_positive", "amd."),
                human_decision_s=r.number(amd_raw, "human_decision_s", "amd."),
                greeting_s=r.number(amd_raw, "greeting_s", "amd."),
                machine_decision_s=r.number(amd_raw, "machine_decision_s", "amd."),
                undetected_machine_agent_s=r.number(amd_raw, "undetected_machine_agent_s", "amd."),
            )
            if amd.machine_detect > 1 or amd.human_false_positive > 1:
                r.fail("amd", "machine_detect and human_false_positive within [0, 1]", amd_raw)
        else:
            r.fail("amd", "null or an object", amd_raw)
    changes: list[Change] = []
    raw_changes = data.get("changes", [])
    if not isinstance(raw_changes, list):
        r.fail("changes", "a list", raw_changes)
        raw_changes = []
    for i, ch in enumerate(raw_changes):
        path = f"changes[{i}]"
        if not isinstance(ch, dict) or "at_hour" not in ch or len(ch) < 2:
            r.fail(path, '{"at_hour": h, KEY: value}', ch)
            continue
        at = r.number(ch, "at_hour", f"{path}.")
        for key, value in ch.items():
            if key == "at_hour":
                continue
            if key not in CHANGE_KEYS:
                r.fail(f"{path}.{key}", f"one of {', '.join(CHANGE_KEYS)}", key)
                continue
            v = r.number(ch, key, f"{path}.")
            if key in ("live", "fast_fail", "machine") and v > 1:
                r.fail(f"{path}.{key}", "a probability within [0, 1]", value)
            if key == "agents" and v != int(v):
                r.fail(f"{path}.{key}", "a whole number of agents", value)
            changes.append(Change(at, key, v))
    scenario = Scenario(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        agents=int(agents),
        shift_hours=shift_hours,
        seeds=seeds,
        live=live,
        fast_fail=fast_fail,
        machine=machine,
        fast_fail_s=r.dist(data["fast_fail_s"], "fast_fail_s"),
        post_dial_delay_s=r.dist(data["post_dial_delay_s"], "post_dial_delay_s"),
        ring_to_answer_s=r.dist(data["ring_to_answer_s"], "ring_to_answer_s"),
        ring_timeout_s=r.number(data, "ring_timeout_s", ""),
        talk_s=r.dist(data["talk_s"], "talk_s"),
        wrap_s=r.dist(data["wrap_s"], "wrap_s"),
        abandon_window_s=r.number(data, "abandon_window_s", ""),
        amd=amd,
        changes=tuple(sorted(changes, key=lambda c: c.at_hour)),
    )
    if r.problems:
        raise ScenarioError(source, r.problems)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(source, [f"cannot read file: {err.strerror or err}"]) from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ScenarioError(
            source, [f"line {err.lineno} column {err.colno}: invalid JSON ({err.msg})"]
        ) from err
    return parse_scenario(data, source)
