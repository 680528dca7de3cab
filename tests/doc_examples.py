"""Examples copied out of the docs, checked by the engine's own loaders.

IVR flows (```yaml blocks) go through the flow loader of ``python -m engine ivr check``
(``engine.ivr.loader.load_dir`` + ``check_links``, the sandbox's queue and intent names, the
installed TTS voices); test-case files (``flow:`` + ``cases:``) through ``ivr tests``'
``load_cases`` and ``run_case`` against the shipped ``ivr/`` flows. JSON request bodies
(``curl ... -d '{...}'``, ``METHOD /v1/path {...}`` lines, and a JSON object in the table row of
a ``| POST | /v1/path |`` route) are validated against the OpenAPI document the server serves
(``live_document`` with the sandbox's engine.toml) for their method and path.

How a ```yaml block becomes something to load (the rule docs/ivr.md states under "Examples in
these docs"):

- ``name:`` first: a whole flow file. It must load as it is: no stubs, every check.
- ``flow:`` first: an expected-paths file (``ivr/tests/``); its cases must load and pass.
- ``- `` (a list of steps) or ``steps:`` first: a **fragment**. It is wrapped into
  ``name: doc-example`` / ``steps:``; a line that is only ``...`` (steps left out) becomes
  ``- hangup``; each branch target and each variable that the fragment names but does not define
  is stubbed (a ``hangup`` step with that id appended; the variable declared under
  ``variables:``; a flow of that name, with that id, for a ``goto`` to another flow), one at a
  time as the loader names them. The unreachable-step check is left out (a fragment often lists
  alternatives, each after the other); every other check applies.
- A block that is an example of an error says so on its first line: ``# invalid: <text>``. It
  must FAIL to load, with an error containing ``<text>``.

A problem is reported as ``docs/x.md:<line>: <what the loader said>``, the line being the doc's.

``engine.toml`` examples (```toml blocks) go through ``validate_config``, the checks of
``python -m engine check-config`` (``load_config`` less its ENGINE_PG_DSN / ENGINE_REDIS_URL
overrides), by the rule README.md states under "Configuration":

- The block must be TOML by itself.
- A block with ``[api]`` and ``[[switches]]`` (what every engine.toml must have) is a whole
  engine.toml: validated as it is.
- Any other block is a **fragment**, merged into the shipped telephony-config/engine.toml and the
  result validated. A table (``[api]``, ``[recordings.queues.sales]``) merges key by key into the
  shipped table of that name: a key the block sets replaces the shipped value (a list whole). A
  top-level array of tables (``[[campaigns]]``, ``[[trunks]]``, ``[[queues]]``) adds its entries:
  one with the ``name`` (``[[agents]]``: ``id``) of a shipped entry replaces that entry (an entry
  is shown whole), any other is appended. ``[[queues.overflow]]`` without its ``[[queues]]`` and
  ``name = ...`` says no queue, and is a problem.
- A block that is an example of an error says so on its first line: ``# invalid: <text>``. It
  must FAIL, with a problem containing ``<text>``.

A problem is reported as ``docs/x.md:<line>: <what check-config said>``: the line of the block
that sets the key the problem names (its last key), else the block's first line. Indexes in key
paths count the merged file's entries (``campaigns[0]``, but ``trunks[3]`` after the sandbox's
three trunks).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shlex
import tempfile
import tomllib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from engine.config import validate_config
from engine.core.errors import ConfigError
from engine.ivr.loader import FlowError, check_links, load_dir, parse_flow
from engine.ivr.queueing import QueueCatalog
from engine.ivr.tester import load_cases, run_case

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)\s*$")
FRAGMENT = "doc-example"
INVALID = re.compile(r"^#\s*invalid:\s*(.+?)\s*$")
ELISION = re.compile(r"^(\s*)\.\.\.\s*(#.*)?$")
UNKNOWN_VAR = re.compile(r"unknown variable '([^']+)'")
UNKNOWN_ID = re.compile(r"no step has id '([^']+)'")
UNKNOWN_FLOW = re.compile(r"goto: no flow named '([^']+)'")
UNKNOWN_NODE = re.compile(r"goto: flow '([^']+)' has no step with id '([^']+)'")
MAX_STUBS = 50


@dataclass(frozen=True)
class Block:
    """A fenced block: ``line`` is the doc line of its first content line."""

    path: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{_name(self.path)}:{self.line}"


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, de-indented by its fence's indentation."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, ticks, lang = len(m.group(1)), m.group(2), m.group(3)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != ticks:
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(path, i + 2, lang.lower(), "\n".join(body) + "\n"))
        i = j + 1
    return blocks


# ---------------------------------------------------------------- IVR flows


def _first_line(text: str) -> str:
    for raw in text.splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            return raw.lstrip()
    return ""


def block_kind(block: Block) -> str:
    """``flow``, ``cases``, ``fragment`` or ``invalid`` (see the module's rule)."""
    first = block.text.lstrip().splitlines()[0] if block.text.strip() else ""
    if INVALID.match(first):
        return "invalid"
    head = _first_line(block.text)
    if head.startswith("name:"):
        return "flow"
    if head.startswith("flow:"):
        return "cases"
    if head.startswith("- ") or head == "-" or head.startswith("steps:"):
        return "fragment"
    return "unknown"


def _at(block: Block, err: FlowError | str, offset: int) -> str:
    """An error of the wrapped text at the doc's line (``offset`` lines were put before)."""
    if isinstance(err, FlowError):
        message = str(err).split(": ", 1)[1] if ": " in str(err) else str(err)
        line = max(err.line - offset, 1)
        if line > len(block.text.splitlines()):
            line = 1  # a stub's line: the block as a whole
        return f"{_name(block.path)}:{block.line + line - 1}: {message}"
    return f"{block.where}: {err}"


def _fragment_body(text: str) -> str:
    out = []
    for raw in text.splitlines():
        m = ELISION.match(raw)
        if m is not None:
            indent = m.group(1) if m.group(1) else "  "
            out.append(f"{indent}- hangup")
        else:
            out.append(raw)
    return "\n".join(out) + "\n"


def _load_flow(
    text: str, directory: Path, voices: Collection[str] | None, catalog: QueueCatalog | None
) -> list[FlowError]:
    (directory / "flow.yaml").write_text(text, encoding="utf-8")
    flows, errors = load_dir(directory, voices, catalog)
    return errors + check_links(flows)


def _load_fragment(
    body: str,
    voices: Collection[str] | None,
    catalog: QueueCatalog | None,
    stubs: tuple[list[str], dict[str, str], dict[str, set[str]]],
) -> list[FlowError]:
    ids, variables, other = stubs
    text = f"name: {FRAGMENT}\n" + ("" if body.lstrip().startswith("steps:") else "steps:\n")
    text += body
    text += "".join(f"  - id: {i}\n    hangup:\n" for i in ids)
    if variables:
        text += "variables:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in variables.items())
    try:
        flow = parse_flow(text, "doc-example.yaml", voices, catalog, reach=False)
    except FlowError as err:
        return [err]
    flows = {FRAGMENT: flow}
    for name, nodes in other.items():
        steps = "".join(f"  - id: {n}\n    hangup:\n" for n in sorted(nodes)) or "  - hangup\n"
        flows[name] = parse_flow(f"name: {name}\nsteps:\n{steps}", f"{name}.yaml", reach=False)
    return check_links(flows)


def check_ivr_block(
    block: Block, voices: Collection[str] | None, catalog: QueueCatalog | None
) -> list[str]:
    """The problems of one ```yaml block of the IVR docs, at the doc's lines ([] = it loads)."""
    kind = block_kind(block)
    if kind == "unknown":
        return [
            f"{block.where}: not a flow, a list of steps nor a test file (tests/doc_examples.py)"
        ]
    if kind == "cases":
        return _check_cases(block, catalog)
    if kind == "invalid":
        m = INVALID.match(block.text.lstrip().splitlines()[0])
        assert m is not None
        expected = m.group(1)
        errors = _check_loadable(block, voices, catalog)
        if not errors:
            return [
                f"{block.where}: marked invalid but loads (expected an error with {expected!r})"
            ]
        if not any(expected in e for e in errors):
            return [f"{block.where}: expected an error with {expected!r}, got {errors}"]
        return []
    return _check_loadable(block, voices, catalog)


def _check_loadable(
    block: Block, voices: Collection[str] | None, catalog: QueueCatalog | None
) -> list[str]:
    head = _first_line(block.text)
    if head.startswith("name:"):
        with tempfile.TemporaryDirectory() as tmp:
            return [_at(block, e, 0) for e in _load_flow(block.text, Path(tmp), voices, catalog)]
    body = _fragment_body(block.text)
    offset = 1 if head.startswith("steps:") else 2
    ids: list[str] = []
    variables: dict[str, str] = {}
    other: dict[str, set[str]] = {}
    for _ in range(MAX_STUBS):
        errors = _load_fragment(body, voices, catalog, (ids, variables, other))
        if not errors:
            return []
        err = errors[0]
        text = str(err)
        if (m := UNKNOWN_VAR.search(text)) and m.group(1) not in variables:
            variables[m.group(1)] = ""
        elif (m := UNKNOWN_ID.search(text)) and m.group(1) not in ids:
            ids.append(m.group(1))
        elif (m := UNKNOWN_FLOW.search(text)) and m.group(1) not in other:
            other[m.group(1)] = set()
        elif (m := UNKNOWN_NODE.search(text)) and m.group(2) not in other.get(m.group(1), ()):
            other.setdefault(m.group(1), set()).add(m.group(2))
        else:
            return [_at(block, e, offset) for e in errors]
    return [f"{block.where}: more than {MAX_STUBS} stubs needed"]


def _check_cases(block: Block, catalog: QueueCatalog | None) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc-example.yaml"
        path.write_text(block.text, encoding="utf-8")
        try:
            cases = load_cases(path)
        except (OSError, ValueError) as err:
            return [f"{block.where}: {err}"]
    problems: list[str] = []
    for case in cases:
        for p in asyncio.run(run_case(ROOT / "ivr", case, catalog)):
            problems.append(f"{block.where}: case {case.name!r}: {p}")
    return problems


def yaml_blocks(paths: Collection[Path]) -> Iterator[Block]:
    for path in paths:
        for block in fenced_blocks(path):
            if block.lang in ("yaml", "yml"):
                yield block


# ---------------------------------------------------------------- JSON request bodies


@dataclass(frozen=True)
class RequestExample:
    where: str
    method: str
    path: str  # as written (``/v1/agents/alice/spy``), without the query
    body: Any


CURL = re.compile(r"\bcurl\b((?:[^'\n]|'[^']*')*)")
REQUEST_LINE = re.compile(r"^\s*(GET|POST|PUT|PATCH|DELETE)\s+(/v1/\S*)\s+(\{.*)$")
TABLE_ROW = re.compile(r"^\|\s*([A-Z, ]+?)\s*\|\s*`(/v1/[^`]*)`\s*\|(.*)$")
INLINE_CODE = re.compile(r"`(\{[^`]*\})`")
PROSE = re.compile(r"`(POST|PUT|PATCH) (/v1/[^`\s]+)`\s+(?:with\s+)?`(\{[^`]*\})`")


def _api_path(url: str) -> str | None:
    url = url.split("?", 1)[0]
    if url.startswith("$API"):
        return "/v1" + url[len("$API") :]
    i = url.find("/v1/")
    return url[i:] if i >= 0 else None


def _curl_examples(block: Block) -> Iterator[RequestExample]:
    text = re.sub(r"\\\n", " ", block.text)
    for m in CURL.finditer(text):
        line = block.line + text[: m.start()].count("\n")
        try:
            args = shlex.split(m.group(1), comments=True)
        except ValueError:
            continue
        method, body, path = "", None, None
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("-X", "--request") and i + 1 < len(args):
                method = args[i + 1]
                i += 1
            elif a in ("-d", "--data", "--data-raw") and i + 1 < len(args):
                body = args[i + 1]
                i += 1
            elif a in ("-H", "--header", "-o", "--output") and i + 1 < len(args):
                i += 1
            elif path is None and not a.startswith("-"):
                path = _api_path(a)
            i += 1
        if body is None:
            continue
        where = f"{block.where.rsplit(':', 1)[0]}:{line}"
        if path is None:
            raise AssertionError(f"{where}: a curl body with no /v1/ URL")
        yield RequestExample(where, method or "POST", path, _json(body, where))


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        # Returned as a marker so the test reports it rather than the extractor failing.
        return NotJson(f"{where}: not JSON: {err}")


@dataclass(frozen=True)
class NotJson:
    problem: str


def _request_lines(block: Block) -> Iterator[RequestExample]:
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        m = REQUEST_LINE.match(lines[i])
        if m is None:
            i += 1
            continue
        text, j = m.group(3), i
        while True:
            try:
                body = json.loads(text)
                break
            except json.JSONDecodeError:
                j += 1
                if j >= len(lines) or REQUEST_LINE.match(lines[j]):
                    body = NotJson(f"{block.path.name}:{block.line + i}: not JSON: {text!r}")
                    j -= 1
                    break
                text += "\n" + lines[j]
        where = f"{block.where.rsplit(':', 1)[0]}:{block.line + i}"
        yield RequestExample(where, m.group(1), m.group(2).split("?", 1)[0], body)
        i = j + 1


def _inline(path: Path) -> Iterator[RequestExample]:
    """A JSON object after ``PATCH /v1/recordings/{id}`` in prose, and in a table row
    ``| POST | `/v1/agents/{agent_id}/pause` | `{"reason": "break"}`: ...``: the first inline
    JSON object of the row, when it parses (``{"call_id", "tags"}`` lists keys, not a body)."""
    name = _name(path)
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for p in PROSE.finditer(raw):
            try:
                prose = json.loads(p.group(3))
            except json.JSONDecodeError:
                continue  # `{"legal_hold": true|false}`: a shorthand, not a body
            yield RequestExample(f"{name}:{n}", p.group(1), p.group(2), prose)
        m = TABLE_ROW.match(raw)
        if m is None or m.group(1) not in ("POST", "PUT", "PATCH"):
            continue
        code = INLINE_CODE.search(m.group(3))
        if code is None:
            continue
        try:
            body = json.loads(code.group(1))
        except json.JSONDecodeError:
            continue
        yield RequestExample(f"{name}:{n}", m.group(1), m.group(2), body)


def request_examples(paths: Collection[Path]) -> list[RequestExample]:
    out: list[RequestExample] = []
    for path in paths:
        for block in fenced_blocks(path):
            if block.lang in ("sh", "bash", "shell", "console", ""):
                out.extend(_curl_examples(block))
            if block.lang in ("", "http", "text"):
                out.extend(_request_lines(block))
        out.extend(_inline(path))
    return out


def _template(doc: dict[str, Any], path: str) -> str | None:
    """The document's path template that ``path`` (``/v1/agents/alice/spy``) is an instance of."""
    if path in doc["paths"]:
        return path
    for template in doc["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return str(template)
    return None


def _schema_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _schema_refs(v) for k, v in node.items()}
        if "$ref" in out:
            out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
        return out
    if isinstance(node, list):
        return [_schema_refs(v) for v in node]
    return node


def check_request(doc: dict[str, Any], example: RequestExample) -> list[str]:
    """The problems of one body against ``doc`` ([] = valid for its method and path)."""
    if isinstance(example.body, NotJson):
        return [example.body.problem]
    template = _template(doc, example.path)
    if template is None:
        return [f"{example.where}: {example.path}: no such path in the OpenAPI document"]
    op = doc["paths"][template].get(example.method.lower())
    if op is None:
        return [f"{example.where}: {example.method} {template}: no such operation"]
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return [f"{example.where}: {example.method} {template} takes no JSON body"]
    schema = {
        **_schema_refs(content["schema"]),
        "$defs": _schema_refs(doc["components"]["schemas"]),
    }
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for e in sorted(validator.iter_errors(example.body), key=lambda e: list(e.absolute_path)):
        field = "/".join(map(str, e.absolute_path)) or "body"
        problems.append(f"{example.where}: {example.method} {template}: {field}: {e.message}")
    return problems


# ---------------------------------------------------------------- engine.toml examples

SHIPPED_CONFIG = ROOT / "telephony-config" / "engine.toml"
ENTRY_KEYS = ("name", "id")  # what names an entry of an array of tables
KEY_PATH = re.compile(r"^([A-Za-z0-9_.\[\]() -]+?): ")
PATH_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)(?:\[\d+\])*$")


def toml_blocks(paths: Collection[Path]) -> Iterator[Block]:
    for path in paths:
        for block in fenced_blocks(path):
            if block.lang == "toml":
                yield block


def _entry_name(entry: Any) -> Any:
    if isinstance(entry, dict):
        return next((entry[k] for k in ENTRY_KEYS if k in entry), None)
    return None


def _merge_table(base: dict[str, Any], block: dict[str, Any], where: str) -> list[str]:
    problems = []
    for key, value in block.items():
        shipped = base.get(key)
        if isinstance(value, dict) and isinstance(shipped, dict):
            problems += _merge_table(shipped, value, f"{where}{key}.")
        elif isinstance(value, dict) and isinstance(shipped, list):
            problems.append(
                f"[{where}{key}] is an array of tables in engine.toml: name its entry "
                f"([[{where}{key}]] and name = ...)"
            )
        else:
            base[key] = value
    return problems


def merged_config(
    block: dict[str, Any], shipped: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """``shipped`` with the fragment ``block`` merged in (the module's rule), and the problems
    of the merge itself."""
    out = copy.deepcopy(shipped)
    problems: list[str] = []
    for key, value in block.items():
        entries = out.get(key)
        if not (isinstance(value, list) and isinstance(entries, list) and value):
            problems += _merge_table(out, {key: value}, "")
            continue
        for entry in value:
            names = [_entry_name(e) for e in entries]
            name = _entry_name(entry)
            if name is not None and name in names:
                entries[names.index(name)] = entry
            else:
                entries.append(entry)
    return out, problems


def _line_of(block: Block, problem: str) -> int:
    """The doc line of the block that sets the key ``problem`` starts with, else the block's."""
    m = KEY_PATH.match(problem)
    key = PATH_KEY.search(m.group(1).strip()) if m else None
    if key is not None:
        name = re.escape(key.group(1))
        setting = re.compile(rf"^\s*(\[\[?[^\]]*\b{name}\]\]?|{name}\s*=)")
        for i, raw in enumerate(block.text.splitlines()):
            if setting.match(raw):
                return block.line + i
    return block.line


def check_config_block(block: Block, shipped: Path = SHIPPED_CONFIG) -> list[str]:
    """The problems of one ```toml block ([] = valid, or invalid as its ``# invalid:`` says)."""
    first = block.text.lstrip().splitlines()[0] if block.text.strip() else ""
    invalid = INVALID.match(first)
    problems = _config_problems(block, shipped)
    if invalid is None:
        return problems
    expected = invalid.group(1)
    if not problems:
        return [f"{block.where}: marked invalid but is valid (expected an error with {expected!r})"]
    if not any(expected in p for p in problems):
        return [f"{block.where}: expected an error with {expected!r}, got {problems}"]
    return []


def _config_problems(block: Block, shipped: Path) -> list[str]:
    name = _name(block.path)
    try:
        data = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as err:
        return [f"{block.where}: not valid TOML: {err}"]
    problems: list[str] = []
    if not {"api", "switches"} <= data.keys():
        base = tomllib.loads(shipped.read_text(encoding="utf-8"))
        data, problems = merged_config(data, base)
        if problems:
            return [f"{block.where}: {p}" for p in problems]
    try:
        validate_config(data, str(shipped))
    except ConfigError as err:
        problems = err.problems
    return [f"{name}:{_line_of(block, p)}: {p}" for p in problems]
