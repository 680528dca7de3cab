"""Imports point down (DESIGN.md "Layers"): no cycle between engine's
top-level packages, and no package imports one from a layer above it.

Read from the source (every ``import`` in every ``engine/**.py``, including
imports inside functions and under ``TYPE_CHECKING``), so a cycle cannot hide
behind a lazy import.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"

# Top to bottom. A package may import its own layer or any layer below.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # doctor: a command beside cli, reading config and probing switches and storage.
    # wiring: the composition root's steps (app.py runs them; they never import app).
    ("entry points", frozenset({"__main__", "cli", "app", "wiring", "config", "doctor"})),
    ("api", frozenset({"api"})),
    (
        "domains",
        frozenset(
            {
                "calls",
                "trunks",
                "dialer",
                "ivr",
                "agents",
                "acd",
                "campaigns",
                "recordings",
                "auth",
                "webhooks",
                "privacy",
                "reports",
            }
        ),
    ),
    ("web helpers for the domains' http.py", frozenset({"web"})),
    # cluster: membership and lease ownership between engines (over the Redis store); the
    # composition root wires it into the domains, which never import it.
    ("cluster", frozenset({"cluster"})),
    # speech (TTS, WAV, the AMD detector) imports nothing of the engine but itself; it sits
    # beside the drivers because the FreeSWITCH driver runs the AMD detector.
    ("switch drivers, speech and storage", frozenset({"pbx", "speech", "store"})),
    ("foundation", frozenset({"core", "telemetry"})),
)

Edge = tuple[str, str, str]  # (from package, to package, "file:line")


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "engine" and len(parts) > 1 else None


def _module_of(path: Path, root: Path) -> list[str]:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return parts


def import_edges(root: Path = ENGINE) -> list[Edge]:
    edges: list[Edge] = []
    for path in sorted(root.rglob("*.py")):
        own = _module_of(path, root)
        src = own[1] if len(own) > 1 else None
        if src is None:  # engine/__init__.py
            continue
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    # Relative: resolved against this module's package.
                    base = own if is_package else own[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    targets = [".".join([*base, *([node.module] if node.module else [])])]
                elif node.module:
                    targets = [node.module]
                    if node.module == "engine":  # from engine import calls
                        targets = [f"engine.{alias.name}" for alias in node.names]
            for target in targets:
                dst = _package(target)
                if dst is not None and dst != src:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    edges.append((src, dst, where))
    return edges


def _layer(package: str) -> int | None:
    return next((i for i, (_, members) in enumerate(LAYERS) if package in members), None)


def upward_imports(edges: list[Edge]) -> list[str]:
    out = []
    for src, dst, where in edges:
        s, d = _layer(src), _layer(dst)
        if s is not None and d is not None and d < s:
            out.append(f"{where}: {src} ({LAYERS[s][0]}) imports {dst} ({LAYERS[d][0]})")
    return out


def find_cycle(edges: list[Edge]) -> list[str] | None:
    """One cycle of the package graph, as the files that close it, or None."""
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for src, dst, where in edges:
        graph[src].setdefault(dst, where)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loop = [*path[path.index(nxt) :], nxt]
                return [f"{a} -> {b} ({graph[a][b]})" for a, b in pairwise(loop)]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_every_top_level_package_has_a_layer() -> None:
    names = {p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in ENGINE.iterdir() if (p / "__init__.py").exists()}
    placed = set().union(*(members for _, members in LAYERS))
    assert names - placed == set(), "place the new package in LAYERS (tests/unit/test_layers.py)"


def test_imports_point_down() -> None:
    assert upward_imports(import_edges()) == []


def test_no_import_cycle_between_packages() -> None:
    assert find_cycle(import_edges()) is None


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    root = tmp_path / "engine"
    for pkg in ("api", "calls", "core", "trunks"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "api" / "keys.py").write_text("from engine.calls.service import CallService\n")
    (root / "calls" / "http.py").write_text(
        "def f() -> None:\n    from engine.api.keys import CALLS\n"
    )
    (root / "core" / "config.py").write_text("from ..trunks import config\n")
    edges = import_edges(root)
    assert find_cycle(edges) == [
        "api -> calls (engine/api/keys.py:1)",
        "calls -> api (engine/calls/http.py:2)",
    ]
    assert upward_imports(edges) == [
        "engine/calls/http.py:2: calls (domains) imports api (api)",
        "engine/core/config.py:1: core (foundation) imports trunks (domains)",
    ]
