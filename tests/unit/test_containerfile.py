"""deploy/Containerfile: consistent with the repository, without a container daemon.

Building the image takes minutes and a daemon (scripts/build-image, docs/production.md
"Container"); these checks read the definition instead: the dependencies come from
pyproject.toml and nowhere else, every file it copies is in the build context, the entrypoint
runs the engine's own CLI, nothing needs a container registry but the base image, and the
build stage's CA bundle stays out of the final image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

from engine.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Containerfile ends inside a continued line"
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions(CONTAINERFILE.read_text()):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _dockerignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = path.split("/")
    for pattern in patterns:
        pattern = pattern.removeprefix("**/")
        for i in range(len(parts)):
            if fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) or fnmatch.fnmatch(
                parts[i], pattern
            ):
                return True
    return False


def test_two_stages_on_one_overridable_base() -> None:
    text = CONTAINERFILE.read_text()
    # A `# syntax=` directive makes BuildKit pull its frontend from Docker Hub: the build then
    # needs that registry even with a base image made from the Debian mirror.
    assert not re.search(r"(?im)^#\s*syntax\s*=", text)
    build, run = _stages()
    assert build[0] == ("FROM", "${BASE_IMAGE} AS build")
    assert run[0] == ("FROM", "${BASE_IMAGE}")
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in text  # the public default


def test_python_dependencies_are_pyprojects_and_only_those() -> None:
    build, _ = _stages()
    runs = " && ".join(args for keyword, args in build if keyword == "RUN")
    installs = [
        shlex.split(cmd.strip())
        for cmd in re.split(r"&&|;", runs)
        if cmd.strip().startswith("pip install")
    ]
    targets = [[a for a in cmd[2:] if not a.startswith("-")] for cmd in installs]
    # pip itself, then the project with its dependencies (pyproject.toml's pins), then the
    # project's code alone (--no-deps): no package named here that pyproject.toml lacks.
    assert targets == [["pip"], ["."], ["."]], installs
    assert "--no-deps" in installs[2]
    copied = [args for keyword, args in build if keyword == "COPY"]
    assert "pyproject.toml README.md ./" in copied
    # The index is a build argument defaulting to PyPI (a mirror can be given).
    assert ("ARG", "PIP_INDEX_URL=https://pypi.org/simple") in build
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies and all("==" in d for d in dependencies), "pins make the image repeatable"


def test_every_copied_path_is_in_the_build_context() -> None:
    for stage in _stages():
        for keyword, args in stage:
            if keyword != "COPY" or args.startswith("--from="):
                continue
            *sources, _destination = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not _dockerignored(source.rstrip("/")), f"{source} is in .dockerignore"


def test_the_build_stage_ca_bundle_stays_out_of_the_final_image() -> None:
    build, run = _stages()
    assert ("COPY", "deploy/build-ca/ /etc/build-ca/") in build
    assert ("ENV", "PIP_CERT=/etc/build-ca/ca.pem") in build
    final = " ".join(args for _, args in run)
    assert "build-ca" not in final and "PIP_CERT" not in final
    # The copied directory holds only its README in the repository; a bundle put there by
    # scripts/build-image is never committed.
    assert "deploy/build-ca/*.pem" in (ROOT / ".gitignore").read_text().splitlines()


def test_entrypoint_runs_the_engine_cli() -> None:
    _, run = _stages()
    final = dict(run)
    entrypoint = json.loads(final["ENTRYPOINT"])
    command = json.loads(final["CMD"])
    assert entrypoint[0] == "/usr/bin/tini" and entrypoint[-3:] == ["python", "-m", "engine"]
    assert (ROOT / "engine" / "__main__.py").is_file()
    # The default command parses with the engine's own CLI.
    args = build_parser().parse_args(command)
    assert args.command == "run" and str(args.config) == "/etc/telephony-engine/engine.toml"
    assert final["STOPSIGNAL"] == "SIGTERM"
    assert final["USER"] == "telephony-engine"


def test_healthcheck_asks_an_api_route_that_exists() -> None:
    _, run = _stages()
    final = dict(run)
    assert "ENGINE_HEALTH_URL=http://127.0.0.1:8080/v1/health/live" in final["ENV"]
    health = (ROOT / "engine" / "api" / "health.py").read_text()
    assert 'add_get("/v1/health/live"' in health
    check = json.loads(final["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert check[:2] == ["python", "-c"]
    compile(check[2], "HEALTHCHECK", "exec")  # a syntax error would mark every container unhealthy
