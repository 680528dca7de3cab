"""Inbound scenario files for the routing simulator (format: docs/acd-simulator.md).

Parsing is strict: every problem names the file, the key path and what was expected, and unknown
keys are refused (a misspelt optional key would otherwise be silently ignored).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.scenario_inputs import Dist, ScenarioError

KIND = "inbound"


class InboundScenarioError(ScenarioError):
    """An inbound scenario file is unreadable or does not follow the documented format."""


@dataclass(frozen=True)
class RatePiece:
    from_s: float
    per_hour: float


@dataclass(frozen=True)
class Segment:
    name: str
    share: float
    features: tuple[float, ...] | None


@dataclass(frozen=True)
class QueueSpec:
    name: str
    priority: int
    skills: Mapping[str, int]
    arrivals: tuple[RatePiece, ...]
    handle_s: Dist
    patience_s: Dist | None
    wrap_s: Dist
    service_level_s: float
    segments: tuple[Segment, ...]

    def rate_per_s(self, t: float) -> float:
        rate = 0.0
        for piece in self.arrivals:
            if piece.from_s <= t:
                rate = piece.per_hour / 3600.0
        return rate


@dataclass(frozen=True)
class AgentSpec:
    id: str
    skills: Mapping[str, int]
    capability: tuple[float, ...] | None
    shift_start_s: float
    shift_end_s: float | None
    conversion: Mapping[str, float]


@dataclass(frozen=True)
class InboundScenario:
    name: str
    description: str
    duration_s: float
    warmup_s: float
    seeds: tuple[int, ...]
    routers: tuple[str, ...]
    queues: tuple[QueueSpec, ...]
    agents: tuple[AgentSpec, ...]

    @property
    def has_conversions(self) -> bool:
        return any(a.conversion for a in self.agents)


TOP_KEYS = {
    "kind",
    "name",
    "description",
    "duration_s",
    "warmup_s",
    "seeds",
    "service_level_s",
    "routers",
    "queues",
    "agents",
}
QUEUE_KEYS = {
    "priority",
    "skills",
    "arrivals",
    "handle_s",
    "patience_s",
    "wrap_s",
    "service_level_s",
    "segments",
}
AGENT_KEYS = {"id", "count", "skills", "capability", "shift_s", "conversion"}
DIST_FORMS = (
    'a number (constant), {"exponential": {"mean": m}}, {"lognormal": {"mean": m, "sd": s}} '
    'or {"uniform": [a, b]}'
)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, path: str, expected: str, got: Any) -> None:
        self.problems.append(f"{path}: expected {expected}, got {got!r}")

    def keys(self, obj: dict[str, Any], allowed: set[str], path: str) -> None:
        for key in obj:
            if key not in allowed:
                self.problems.append(
                    f"{path}{key}: unknown key, expected one of {', '.join(sorted(allowed))}"
                )

    def number(self, value: Any, path: str, *, lo: float = 0.0, positive: bool = False) -> float:
        if not _is_num(value) or value < lo or (positive and value <= 0):
            bound = f"> {lo}" if positive else f">= {lo}"
            self.fail(path, f"a number {bound}", value)
            return max(lo, 1.0) if positive else lo
        return float(value)

    def integer(self, value: Any, path: str, lo: int, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.fail(path, f"an integer >= {lo}" + (f" and <= {hi}" if hi else ""), value)
            return lo
        if hi is not None and value > hi:
            self.fail(path, f"an integer >= {lo} and <= {hi}", value)
            return hi
        return value

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "a non-empty string", value)
            return "?"
        return value

    def dist(self, value: Any, path: str) -> Dist:
        if _is_num(value):
            if value < 0:
                self.fail(path, "a non-negative constant", value)
                return Dist("const", 0.0)
            return Dist("const", float(value))
        if isinstance(value, dict) and len(value) == 1:
            ((kind, params),) = value.items()
            if kind == "exponential":
                if (
                    isinstance(params, dict)
                    and set(params) == {"mean"}
                    and _is_num(params["mean"])
                    and params["mean"] > 0
                ):
                    return Dist("exponential", float(params["mean"]))
                self.fail(f"{path}.exponential", '{"mean": m > 0}', params)
                return Dist("const", 0.0)
            if kind == "lognormal":
                ok = (
                    isinstance(params, dict)
                    and set(params) == {"mean", "sd"}
                    and _is_num(params["mean"])
                    and _is_num(params["sd"])
                    and params["mean"] > 0
                    and params["sd"] >= 0
                )
                if ok:
                    return Dist("lognormal", float(params["mean"]), float(params["sd"]))
                self.fail(f"{path}.lognormal", '{"mean": m > 0, "sd": s >= 0}', params)
                return Dist("const", 0.0)
            if kind == "uniform":
                ok = (
                    isinstance(params, list)
                    and len(params) == 2
                    and all(_is_num(x) for x in params)
                    and 0 <= params[0] <= params[1]
                )
                if ok:
                    return Dist("uniform", float(params[0]), float(params[1]))
                self.fail(f"{path}.uniform", "[a, b] with 0 <= a <= b", params)
                return Dist("const", 0.0)
        self.fail(path, DIST_FORMS, value)
        return Dist("const", 0.0)

    def skills(self, value: Any, path: str) -> dict[str, int]:
        if not isinstance(value, dict):
            self.fail(path, "an object of skill name -> level 1..10", value)
            return {}
        return {
            self.text(k, f"{path} key"): self.integer(v, f"{path}.{k}", 1, 10)
            for k, v in value.items()
        }

    def vector(self, value: Any, path: str) -> tuple[float, ...]:
        if isinstance(value, list) and value and all(_is_num(x) for x in value):
            return tuple(float(x) for x in value)
        self.fail(path, "a non-empty list of numbers", value)
        return ()

    def arrivals(self, value: Any, path: str) -> tuple[RatePiece, ...]:
        if not (isinstance(value, dict) and set(value) == {"poisson_per_hour"}):
            self.fail(
                path,
                '{"poisson_per_hour": rate} or {"poisson_per_hour": '
                '[{"from_s": t, "rate": r}, ...]}',
                value,
            )
            return ()
        spec = value["poisson_per_hour"]
        p = f"{path}.poisson_per_hour"
        if _is_num(spec):
            return (RatePiece(0.0, self.number(spec, p)),)
        if not isinstance(spec, list) or not spec:
            self.fail(p, "a rate >= 0 or a non-empty list of pieces", spec)
            return ()
        pieces: list[RatePiece] = []
        for i, item in enumerate(spec):
            ip = f"{p}[{i}]"
            if not (isinstance(item, dict) and set(item) == {"from_s", "rate"}):
                self.fail(ip, '{"from_s": t, "rate": r}', item)
                continue
            piece = RatePiece(self.number(item["from_s"], f"{ip}.from_s"), 0.0)
            piece = RatePiece(piece.from_s, self.number(item["rate"], f"{ip}.rate"))
            if pieces and piece.from_s <= pieces[-1].from_s:
                self.fail(f"{ip}.from_s", f"a time after {pieces[-1].from_s}", item["from_s"])
            pieces.append(piece)
        return tuple(pieces)

    def segments(self, value: Any, path: str) -> tuple[Segment, ...]:
        if not isinstance(value, list) or not value:
            self.fail(path, 'a non-empty list of {"name", "share", "features"?}', value)
            return ()
        out: list[Segment] = []
        for i, item in enumerate(value):
            ip = f"{path}[{i}]"
            if not isinstance(item, dict):
                self.fail(ip, 'an object {"name", "share", "features"?}', item)
                continue
            self.keys(item, {"name", "share", "features"}, f"{ip}.")
            features = item.get("features")
            out.append(
                Segment(
                    name=self.text(item.get("name"), f"{ip}.name"),
                    share=self.number(item.get("share"), f"{ip}.share", positive=True),
                    features=None if features is None else self.vector(features, f"{ip}.features"),
                )
            )
        names = [s.name for s in out]
        if len(set(names)) != len(names):
            self.fail(path, "distinct segment names", names)
        return tuple(out)


def _queue(r: _Reader, name: str, raw: Any, default_sl: float) -> QueueSpec | None:
    path = f"queues.{name}"
    if not isinstance(raw, dict):
        r.fail(path, "an object", raw)
        return None
    r.keys(raw, QUEUE_KEYS, f"{path}.")
    for key in ("arrivals", "handle_s"):
        if key not in raw:
            r.problems.append(f"{path}.{key}: required key is missing")
    if "arrivals" not in raw or "handle_s" not in raw:
        return None
    patience = raw.get("patience_s")
    segments = raw.get("segments")
    return QueueSpec(
        name=name,
        priority=r.integer(raw.get("priority", 1), f"{path}.priority", 0),
        skills=r.skills(raw.get("skills", {}), f"{path}.skills"),
        arrivals=r.arrivals(raw["arrivals"], f"{path}.arrivals"),
        handle_s=r.dist(raw["handle_s"], f"{path}.handle_s"),
        patience_s=None if patience is None else r.dist(patience, f"{path}.patience_s"),
        wrap_s=r.dist(raw.get("wrap_s", 0), f"{path}.wrap_s"),
        service_level_s=r.number(raw.get("service_level_s", default_sl), f"{path}.service_level_s"),
        segments=() if segments is None else r.segments(segments, f"{path}.segments"),
    )


def _agents(r: _Reader, raw: Any, segment_names: set[str]) -> list[AgentSpec]:
    if not isinstance(raw, list) or not raw:
        r.fail("agents", "a non-empty list of agent objects", raw)
        return []
    out: list[AgentSpec] = []
    for i, item in enumerate(raw):
        path = f"agents[{i}]"
        if not isinstance(item, dict):
            r.fail(path, "an object", item)
            continue
        r.keys(item, AGENT_KEYS, f"{path}.")
        base = r.text(item.get("id"), f"{path}.id")
        count = r.integer(item.get("count", 1), f"{path}.count", 1)
        capability = item.get("capability")
        shift = item.get("shift_s", [0, None])
        start, end = 0.0, None
        if (
            isinstance(shift, list)
            and len(shift) == 2
            and _is_num(shift[0])
            and shift[0] >= 0
            and (shift[1] is None or (_is_num(shift[1]) and shift[1] > shift[0]))
        ):
            start, end = float(shift[0]), None if shift[1] is None else float(shift[1])
        else:
            r.fail(f"{path}.shift_s", "[start, end] with 0 <= start < end (end may be null)", shift)
        conversion: dict[str, float] = {}
        raw_conv = item.get("conversion", {})
        if isinstance(raw_conv, dict):
            for seg, p in raw_conv.items():
                if seg not in segment_names:
                    known = ", ".join(sorted(segment_names)) or "none defined"
                    r.fail(f"{path}.conversion.{seg}", f"a segment of a queue ({known})", seg)
                elif not (_is_num(p) and 0 <= p <= 1):
                    r.fail(f"{path}.conversion.{seg}", "a probability within [0, 1]", p)
                else:
                    conversion[seg] = float(p)
        else:
            r.fail(f"{path}.conversion", "an object of segment -> probability", raw_conv)
        spec = AgentSpec(
            id=base,
            skills=r.skills(item.get("skills", {}), f"{path}.skills"),
            capability=None if capability is None else r.vector(capability, f"{path}.capability"),
            shift_start_s=start,
            shift_end_s=end,
            conversion=conversion,
        )
        if count == 1:
            out.append(spec)
        else:
            out.extend(
                AgentSpec(
                    f"{base}-{n}",
                    spec.skills,
                    spec.capability,
                    spec.shift_start_s,
                    spec.shift_end_s,
                    spec.conversion,
                )
                for n in range(1, count + 1)
            )
    ids = [a.id for a in out]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        r.fail("agents", "distinct agent ids (count N expands id to id-1..id-N)", dupes)
    return out


def _vector_lengths(r: _Reader, raw_agents: Any, queues: list[QueueSpec]) -> None:
    """The engine's router compares a call's features with agents' capability vectors as
    numpy rows of one width (best-match), so every vector must have the same length."""
    width: tuple[str, int] | None = None
    vectors: list[tuple[str, Any]] = []
    if isinstance(raw_agents, list):
        vectors += [
            (f"agents[{i}].capability", a.get("capability"))
            for i, a in enumerate(raw_agents)
            if isinstance(a, dict)
        ]
    vectors += [
        (f"queues.{q.name}.segments[{i}].features", seg.features)
        for q in queues
        for i, seg in enumerate(q.segments)
    ]
    for path, vec in vectors:
        if not isinstance(vec, list | tuple) or not vec:
            continue  # absent, or already reported as malformed
        if width is None:
            width = (path, len(vec))
        elif len(vec) != width[1]:
            r.fail(path, f"{width[1]} numbers, as many as {width[0]}", list(vec))


def is_inbound(data: Any) -> bool:
    return isinstance(data, dict) and data.get("kind") == KIND


def parse_scenario(data: Any, source: str = "<scenario>") -> InboundScenario:
    r = _Reader(source)
    if not isinstance(data, dict):
        raise InboundScenarioError(
            source, [f"top level: expected a JSON object, got {type(data).__name__}"]
        )
    r.keys(data, TOP_KEYS, "")
    if data.get("kind") != KIND:
        r.fail("kind", f'"{KIND}"', data.get("kind"))
    for key in ("duration_s", "queues", "agents"):
        if key not in data:
            r.problems.append(f"{key}: required key is missing")
    if r.problems:
        raise InboundScenarioError(source, r.problems)
    duration = r.number(data["duration_s"], "duration_s", positive=True)
    warmup = r.number(data.get("warmup_s", 0), "warmup_s")
    if warmup >= duration:
        r.fail("warmup_s", f"less than duration_s ({duration})", data.get("warmup_s"))
    seeds_raw = data.get("seeds", [1])
    seeds: tuple[int, ...] = (1,)
    if (
        isinstance(seeds_raw, list)
        and seeds_raw
        and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds_raw)
    ):
        seeds = tuple(seeds_raw)
    else:
        r.fail("seeds", "a non-empty list of integers", seeds_raw)
    routers_raw = data.get("routers", ["longest-idle"])
    routers: tuple[str, ...] = ("longest-idle",)
    if (
        isinstance(routers_raw, list)
        and routers_raw
        and all(isinstance(x, str) for x in routers_raw)
    ):
        routers = tuple(routers_raw)
    else:
        r.fail("routers", "a non-empty list of router names", routers_raw)
    default_sl = r.number(data.get("service_level_s", 20), "service_level_s")
    queues: list[QueueSpec] = []
    raw_queues = data["queues"]
    if isinstance(raw_queues, dict) and raw_queues:
        for name, raw in raw_queues.items():
            q = _queue(r, name, raw, default_sl)
            if q is not None:
                queues.append(q)
    else:
        r.fail("queues", "a non-empty object of queue name -> queue", raw_queues)
    segment_names = {s.name for q in queues for s in q.segments}
    agents = _agents(r, data["agents"], segment_names)
    for q in queues:
        if not any(all(a.skills.get(s, 0) >= lvl for s, lvl in q.skills.items()) for a in agents):
            r.problems.append(f"queues.{q.name}.skills: no agent has the required skills")
    _vector_lengths(r, data["agents"], queues)
    if r.problems:
        raise InboundScenarioError(source, r.problems)
    return InboundScenario(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        duration_s=duration,
        warmup_s=warmup,
        seeds=seeds,
        routers=routers,
        queues=tuple(queues),
        agents=tuple(agents),
    )


def read_json(path: str | Path) -> Any:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InboundScenarioError(source, [f"cannot read file: {err.strerror or err}"]) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InboundScenarioError(
            source, [f"line {err.lineno} column {err.colno}: invalid JSON ({err.msg})"]
        ) from err


def load_scenario(path: str | Path) -> InboundScenario:
    return parse_scenario(read_json(path), str(path))
