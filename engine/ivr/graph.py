"""The flow as a graph of steps: who follows whom, and the load-time checks on it.

A step falls through to the next one unless it ends the flow (``hangup``, a
``goto`` to another flow) or always jumps (``goto``, ``split``, an ``if`` with
both branches). Branches name steps by their ``id``. Pure functions, no I/O.
"""

from __future__ import annotations

from engine.ivr.model import (
    Condition,
    Flow,
    Gather,
    Goto,
    Hangup,
    Menu,
    Record,
    Split,
    Step,
    Switch,
    Transfer,
    Webhook,
)

# Steps that wait for the caller: a loop through one of them is a retry, not a spin.
WAITS = (Gather, Menu, Record)


def branch_labels(step: Step) -> list[str]:
    """The node ids a step may jump to (not its fall-through)."""
    if isinstance(step, Goto):
        return [step.node] if step.node and not step.flow else []
    if isinstance(step, Condition):
        return [x for x in (step.then, step.else_) if x]
    if isinstance(step, Switch):
        return [t for _, t in step.cases] + ([step.default] if step.default else [])
    if isinstance(step, Menu):
        return [o.goto for o in step.options] + [x for x in (step.on_invalid, step.on_timeout) if x]
    if isinstance(step, Gather):
        return [x for x in (step.on_invalid, step.on_timeout) if x]
    if isinstance(step, Webhook | Transfer | Record):
        return [step.on_error] if step.on_error else []
    if isinstance(step, Split):
        return [v.goto for v in step.variants]
    return []


def falls_through(step: Step) -> bool:
    if isinstance(step, Hangup | Goto | Split):
        return False
    if isinstance(step, Condition):
        return not step.else_
    if isinstance(step, Switch):
        return not step.default
    if isinstance(step, Menu):
        return not (step.on_invalid and step.on_timeout)
    return True


def successors(flow: Flow, index: int) -> list[int]:
    step = flow.steps[index]
    out = [flow.labels[label] for label in branch_labels(step)]
    if falls_through(step) and index + 1 < len(flow.steps):
        out.append(index + 1)
    return sorted(set(out))


def unreachable(flow: Flow, starts: list[int] | None = None) -> list[int]:
    seen = set(starts or [0])
    todo = list(seen)
    while todo:
        for nxt in successors(flow, todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return [i for i in range(len(flow.steps)) if i not in seen]


def busy_cycle(flow: Flow) -> list[int] | None:
    """A cycle of steps none of which waits for the caller (step indices), or None.

    Depth-first search over the steps that do not wait; a back edge closes a cycle.
    """
    waits = {i for i, s in enumerate(flow.steps) if isinstance(s, WAITS)}
    state: dict[int, int] = {}  # 1 = on the stack, 2 = done
    stack: list[int] = []

    def visit(i: int) -> list[int] | None:
        state[i] = 1
        stack.append(i)
        for j in successors(flow, i):
            if j in waits:
                continue
            if state.get(j) == 1:
                return stack[stack.index(j) :]
            if j not in state:
                found = visit(j)
                if found is not None:
                    return found
        stack.pop()
        state[i] = 2
        return None

    for start in range(len(flow.steps)):
        if start not in waits and start not in state:
            found = visit(start)
            if found is not None:
                return found
    return None
