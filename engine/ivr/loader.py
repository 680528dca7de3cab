"""Load IVR flows from YAML with errors that point at file:line (engine/ivr/syntax.py),
then check each flow as a whole: branch targets, unknown variables, unreachable
steps, loops that never wait (engine/ivr/graph.py), links between flows."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path

import yaml

from engine.ivr import graph
from engine.ivr.expr import Value
from engine.ivr.model import (
    Analyze,
    Condition,
    EnterQueue,
    Flow,
    Gather,
    Goto,
    Menu,
    Play,
    Record,
    Say,
    SetVars,
    Split,
    Step,
    Switch,
    Transfer,
    Webhook,
)
from engine.ivr.parse_steps import parse_step
from engine.ivr.queueing import QueueCatalog
from engine.ivr.syntax import (
    BUILTINS,
    MAX_STEPS,
    NAME,
    NAME_CHARS,
    PROMPT,
    FlowError,
    asr_plugin,
    is_dynamic,
    line_of,
    mapping,
    matching,
    only,
    scalar,
    suggest,
)
from engine.ivr.template import VAR
from engine.ivr.template import fields as template_fields

__all__ = [
    "PROMPT",
    "FlowError",
    "check_links",
    "check_reach",
    "flow_files",
    "load_dir",
    "parse_flow",
    "yaml_problem",
]


def yaml_problem(err: yaml.YAMLError, text: str) -> tuple[int, str]:
    """The line and message of a YAML error. A problem found only at the end of the
    file (an unclosed quote, ``{`` or ``[``) is reported where the construct began,
    the line an author has to fix, rather than at the last line."""
    problem = str(getattr(err, "problem", None) or err)
    mark = getattr(err, "problem_mark", None)
    line = int(mark.line) + 1 if mark is not None else 1
    context = getattr(err, "context", None)
    start = getattr(err, "context_mark", None)
    if mark is not None and start is not None and context and not text[mark.index :].strip():
        return int(start.line) + 1, f"not valid YAML: {context}: {problem} (at line {line})"
    return line, f"not valid YAML: {problem}"


def _defaults(node: yaml.Node, src: str) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, value in mapping(node, src, "variables").items():
        if not VAR.match(key):
            raise FlowError(src, line_of(value), f"variables: {key!r} is not a variable name")
        text = scalar(value, src, f"variables.{key}")
        tag = value.tag if isinstance(value, yaml.ScalarNode) else ""
        if tag.endswith(":int") or tag.endswith(":float"):
            try:
                out[key] = int(text) if tag.endswith(":int") else float(text)
            except ValueError:
                out[key] = text
        elif tag.endswith(":bool"):
            out[key] = text.lower() in ("true", "yes", "on")
        elif tag.endswith(":null"):
            out[key] = ""
        else:
            out[key] = text
    return out


def _written(step: Step) -> list[str]:
    """Variables a step sets."""
    if isinstance(step, Gather):
        return [step.into]
    if isinstance(step, Menu):
        return [step.into] if step.into else []
    if isinstance(step, SetVars):
        return list(step.values)
    if isinstance(step, Webhook):
        return list(step.map)
    if isinstance(step, Record):
        return [step.into]
    if isinstance(step, Split):
        return [f"split.{step.name}"]
    return []


def _read(step: Step) -> list[str]:
    """Variables a step reads."""
    texts: list[str] = []
    names: list[str] = []
    if isinstance(step, Say):
        texts.append(step.text)
    elif isinstance(step, Play):
        texts.append(step.prompt)
    elif isinstance(step, Gather | Menu):
        if step.say is not None:
            texts.append(step.say.text)
        if isinstance(step, Menu) and step.invalid_say is not None:
            texts.append(step.invalid_say.text)
    elif isinstance(step, SetVars):
        texts.extend(step.values.values())
    elif isinstance(step, Webhook):
        texts.append(step.url)
        texts.extend(step.body.values())
    elif isinstance(step, Transfer):
        texts.extend([step.endpoint, step.number])
    elif isinstance(step, Analyze):
        texts.append(step.text)
    elif isinstance(step, EnterQueue):
        texts.extend(step.customer.values())
        if step.choice is not None:
            names.append(step.choice.var)
    elif isinstance(step, Condition | Switch):
        names.extend(sorted(step.expr.names))
    for text in texts:
        names.extend(template_fields(text))
    return names


def check_reach(flow: Flow, entries: Collection[str] = ()) -> None:
    """Every step must be reachable from the first one or from ``entries`` (the
    steps other flows' ``goto`` names)."""
    starts = [0] + [flow.labels[e] for e in entries if e in flow.labels]
    for index in graph.unreachable(flow, starts):
        step = flow.steps[index]
        raise FlowError(
            flow.source,
            step.line,
            f"steps[{index}]: unreachable (no step leads here; give it an id: and a branch to it)",
        )


def _check_graph(flow: Flow, refs: list[tuple[str, int, str]]) -> None:
    src = flow.source
    for label, line, what in refs:
        if label not in flow.labels:
            raise FlowError(
                src, line, f"{what}: no step has id {label!r}{suggest(label, flow.labels)}"
            )
    known = set(BUILTINS) | set(flow.defaults)
    for step in flow.steps:
        known.update(_written(step))
    for step in flow.steps:
        for name in _read(step):
            if name not in known and not is_dynamic(name):
                # A misspelt namespace (contcat.name) is offered its contact.* spelling.
                head, _, tail = name.partition(".")
                near = set(known)
                if is_dynamic(f"contact.{tail}") and difflib.get_close_matches(head, ["contact"]):
                    near.add(f"contact.{tail}")
                raise FlowError(
                    src,
                    step.line,
                    f"unknown variable {name!r}: no step sets it and it is not declared under "
                    f"variables: nor built in (nor contact.<field>){suggest(name, near)}",
                )
    cycle = graph.busy_cycle(flow)
    if cycle is not None:
        lines = ", ".join(str(flow.steps[i].line) for i in cycle)
        raise FlowError(
            src,
            flow.steps[cycle[0]].line,
            f"steps[{cycle[0]}]: a loop that never waits for the caller (lines {lines}); "
            "put a gather, menu or record on it",
        )


def parse_flow(
    text: str,
    source: str,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
    *,
    reach: bool = True,
) -> Flow:
    """Parse one flow. ``reach=False`` leaves out the unreachable-step check
    (:func:`load_dir` makes it once it knows which steps other flows jump to).
    ``voices`` (lower-case TTS voice names) enables the check of every ``say``
    voice; ``None`` skips it (no TTS engine to ask). ``catalog`` (the configured
    queues and intents) enables the check of every ``queue`` step's queue and
    intents; ``None`` skips it (no ACD to ask)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        raise FlowError(source, *yaml_problem(err, text)) from err
    if root is None:
        raise FlowError(source, 1, "empty file; expected 'name:' and 'steps:'")
    top = mapping(root, source, "flow")
    only(top, {"name", "description", "steps", "variables", "asr"}, source, "flow")
    for required in ("name", "steps"):
        if required not in top:
            raise FlowError(source, line_of(root), f"flow: '{required}:' is required")
    name = matching(NAME, top["name"], source, "name", NAME_CHARS)
    steps_node = top["steps"]
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise FlowError(source, line_of(steps_node), "steps: expected a non-empty list")
    if len(steps_node.value) > MAX_STEPS:
        raise FlowError(source, line_of(steps_node), f"steps: at most {MAX_STEPS} steps")
    refs: list[tuple[str, int, str]] = []
    steps = tuple(
        parse_step(n, source, i, voices, catalog, refs) for i, n in enumerate(steps_node.value)
    )
    labels: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.label:
            if step.label in labels:
                raise FlowError(
                    source,
                    step.line,
                    f"steps[{i}].id: {step.label!r} already names steps[{labels[step.label]}]",
                )
            labels[step.label] = i
    desc = scalar(top["description"], source, "description") if "description" in top else ""
    defaults = _defaults(top["variables"], source) if "variables" in top else {}
    flow = Flow(
        name=name,
        source=source,
        steps=steps,
        description=desc,
        defaults=defaults,
        labels=labels,
        asr=asr_plugin(top, source, "flow"),
    )
    _check_graph(flow, refs)
    if reach:
        check_reach(flow)
    return flow


def check_links(flows: dict[str, Flow]) -> list[FlowError]:
    """``goto`` to another flow: that flow (and step) must exist. Returns the errors."""
    errors: list[FlowError] = []
    for flow in flows.values():
        for step in flow.steps:
            if isinstance(step, Goto) and step.flow:
                other = flows.get(step.flow)
                if other is None:
                    errors.append(
                        FlowError(
                            flow.source,
                            step.line,
                            f"goto: no flow named {step.flow!r}{suggest(step.flow, flows)}",
                        )
                    )
                elif step.node and step.node not in other.labels:
                    errors.append(
                        FlowError(
                            flow.source,
                            step.line,
                            f"goto: flow {step.flow!r} has no step with id {step.node!r}",
                        )
                    )
    return errors


def flow_files(directory: Path) -> list[Path]:
    """The flow files of ``directory``: every ``*.yaml``, and the files that look
    like flows but are not loaded (``*.yml``, ``*.YAML``), which :func:`load_dir`
    reports rather than skips in silence."""
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in (".yaml", ".yml"))


def load_dir(
    directory: Path,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
) -> tuple[dict[str, Flow], list[FlowError]]:
    """Load every *.yaml flow. Bad files are returned as errors, never raised,
    so one broken file cannot take the good ones down."""
    parsed: dict[str, list[Flow]] = {}
    errors: list[FlowError] = []
    for path in flow_files(directory):
        if path.suffix != ".yaml":
            errors.append(
                FlowError(
                    str(path),
                    1,
                    f"not loaded: flow files end in .yaml (rename it {path.stem}.yaml)",
                )
            )
            continue
        try:
            flow = parse_flow(
                path.read_text(encoding="utf-8"), str(path), voices, catalog, reach=False
            )
        except FlowError as err:
            errors.append(err)
            continue
        except (OSError, UnicodeDecodeError) as err:
            errors.append(FlowError(str(path), 1, f"cannot read: {err}"))
            continue
        parsed.setdefault(flow.name, []).append(flow)
    flows: dict[str, Flow] = {}
    for name, same in parsed.items():
        if len(same) == 1:
            flows[name] = same[0]
            continue
        # Every file of a name used twice is rejected: which one calls would get must
        # not depend on file names (a copy `a-main.yaml` that forgot to rename its
        # flow would otherwise replace the live `main`). The previous version stays.
        for flow in same:
            others = ", ".join(f.source for f in same if f is not flow)
            errors.append(FlowError(flow.source, 1, f"flow name {name!r} is also used by {others}"))
    entries: dict[str, set[str]] = {}
    for flow in flows.values():
        for step in flow.steps:
            if isinstance(step, Goto) and step.flow and step.node:
                entries.setdefault(step.flow, set()).add(step.node)
    for name, flow in list(flows.items()):
        try:
            check_reach(flow, entries.get(name, ()))
        except FlowError as err:
            errors.append(err)
            del flows[name]
    return flows, errors
