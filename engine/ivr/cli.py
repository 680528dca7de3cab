"""``python -m engine ivr ...``: check flows, run one offline, run the flows' tests.

ivr check [--dir ivr]
ivr test FLOW [--dir ivr] [--input dtmf:1 --input speech:"sales"]
              [--webhook URL=FILE.json | URL=!timeout | URL=!500] [--set var=value]
ivr tests [FILE.yaml ...] [--dir ivr]       (default: ivr/tests/*.yaml)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.errors import ConfigError
from engine.ivr.queueing import QueueCatalog
from engine.ivr.tester import load_cases, parse_input, run_case, simulate

CatalogLoader = Callable[[Path], QueueCatalog | None]

DEFAULT_DIR = "ivr"
DEFAULT_CONFIG = "telephony-config/engine.toml"


def _flow_and_dir(flow: str, directory: str) -> tuple[str, Path]:
    """FLOW is a flow name, or a flow file (its directory is then the flow directory)."""
    path = Path(flow)
    if path.suffix in (".yaml", ".yml") and path.exists():
        import yaml

        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = str(doc.get("name", path.stem)) if isinstance(doc, dict) else path.stem
        return name, path.parent
    return flow, Path(directory)


class _Usage(Exception):
    """A bad invocation: printed as ``error: ...``, exit 2."""


def _directory(path: Path) -> Path:
    # A misspelt --dir must not pass as "0 flow(s) loaded, 0 error(s)".
    if not path.is_dir():
        raise _Usage(f"--dir {path}: no such directory (expected the flow directory, e.g. ivr)")
    return path


def _catalog(args: argparse.Namespace) -> QueueCatalog | None:
    try:
        return args.catalog(Path(args.config))  # type: ignore[no-any-return]
    except ConfigError as err:
        raise _Usage(
            "\n".join(err.lines())
            + "\n(--config: the engine.toml whose queue and intent names flows may use)"
        ) from None


def _usage(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except _Usage as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return run


def _quiet() -> None:
    """The report is the output; the runtime's own warnings (a webhook that
    failed on purpose) would only interleave with it."""
    from engine.telemetry.logging import setup_logging

    setup_logging("error", "console")


def _test(args: argparse.Namespace) -> int:
    _quiet()
    try:
        inputs = [parse_input(x) for x in args.input]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    hooks: dict[str, str] = {}
    for item in args.webhook:
        url, sep, target = item.rpartition("=")
        if not sep or not url:
            print(f"error: --webhook {item!r}: expected URL=FILE.json", file=sys.stderr)
            return 2
        if target.startswith("!"):
            hooks[url] = target
        else:
            try:
                hooks[url] = Path(target).read_text(encoding="utf-8")
            except OSError as err:
                print(f"error: --webhook {url}: cannot read {target}: {err}", file=sys.stderr)
                return 2
    preset: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --set {item!r}: expected var=value", file=sys.stderr)
            return 2
        preset[key] = value
    name, directory = _flow_and_dir(args.flow, args.dir)
    directory = _directory(directory)
    catalog = _catalog(args)
    report = asyncio.run(
        simulate(
            directory,
            name,
            inputs,
            hooks,
            call_id=args.call_id,
            caller=args.caller,
            preset=preset,
            catalog=catalog,
        )
    )
    for problem in report.load_errors:
        print(f"load error: {problem}", file=sys.stderr)
    print("\n".join(report.lines()))
    return 1 if report.result.end == "failed" else 0


def _tests(args: argparse.Namespace) -> int:
    _quiet()
    directory = _directory(Path(args.dir))
    files = [Path(f) for f in args.files] or sorted((directory / "tests").glob("*.yaml"))
    catalog = _catalog(args)
    failed = total = 0
    for path in files:
        try:
            cases = load_cases(path)
        except (OSError, ValueError) as err:
            print(f"ERROR {err}")
            failed += 1  # the file counts as one failed test: "0/1 passed", not "-1/0"
            total += 1
            continue
        for case in cases:
            total += 1
            problems = asyncio.run(run_case(directory, case, catalog))
            status = "FAIL" if problems else "ok"
            print(f"{status:4} {path.name} :: {case.name}")
            for p in problems:
                print(f"       {p}")
            failed += bool(problems)
    print(f"{total - failed}/{total} passed")
    return 1 if failed else 0


def _check(args: argparse.Namespace) -> int:
    from engine.ivr.loader import check_links, load_dir
    from engine.ivr.tester import TextSpeaker
    from engine.speech.tts import TtsError

    try:
        voices: frozenset[str] | None = TextSpeaker().voices()
    except TtsError as err:
        print(f"note: TTS voices not checked ({err})", file=sys.stderr)
        voices = None
    flows, errors = load_dir(_directory(Path(args.dir)), voices, _catalog(args))
    errors += check_links(flows)
    for problem in errors:
        print(problem, file=sys.stderr)
    for name, flow in sorted(flows.items()):
        # Calls name a flow by its name: key, not its file: a typo there renames the flow, and
        # calls to the file's name then find none (400 unknown-flow). Loads, but say so.
        stem = Path(flow.source).stem
        if stem != name:
            print(
                f"{flow.source}: note: the flow is named {name!r}, not {stem!r} like its file; "
                f"calls must use {name!r}",
                file=sys.stderr,
            )
    print(f"{len(flows)} flow(s) loaded, {len(errors)} error(s)")
    return 1 if errors else 0


def add_parsers(subparsers: Any, catalog: CatalogLoader) -> None:
    """``catalog`` reads the queue and intent names from an engine.toml (None if
    there is none): the entry point passes it, as the domains do not read config."""
    ivr = subparsers.add_parser("ivr", help="IVR flows: check, test offline")
    isub = ivr.add_subparsers(dest="ivr_command", required=True)
    for name, func, text in (
        ("check", _check, "validate every flow of the directory"),
        ("test", _test, "run one flow with scripted input and canned webhooks"),
        ("tests", _tests, "run the expected paths of ivr/tests/*.yaml"),
    ):
        p = isub.add_parser(
            name,
            help=text,
            description=(__doc__ or "").replace("``", ""),  # plain text for --help
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--dir", default=DEFAULT_DIR, help="flow directory (default: ivr)")
        p.add_argument(
            "--config",
            default=DEFAULT_CONFIG,
            help="engine.toml for queue/intent names (skipped if absent)",
        )
        p.set_defaults(func=_usage(func), catalog=catalog)
        if name == "test":
            p.add_argument("flow", help="flow name, or a flow file")
            p.add_argument(
                "--input",
                action="append",
                default=[],
                help="dtmf:KEYS | speech:WORDS[@confidence] | silence (in order)",
            )
            p.add_argument(
                "--webhook",
                action="append",
                default=[],
                help="URL=FILE.json (or URL=!timeout, URL=!500); URL may be a glob",
            )
            p.add_argument("--set", action="append", default=[], help="var=value before the run")
            p.add_argument("--call-id", default="offline-call", help="decides split variants")
            p.add_argument("--caller", default="", help="caller.number")
        if name == "tests":
            p.add_argument("files", nargs="*", help="test files (default: <dir>/tests/*.yaml)")
