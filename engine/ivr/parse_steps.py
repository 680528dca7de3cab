"""One step of a flow file -> a step of the model (engine/ivr/model.py)."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Collection

import yaml

from engine.ivr.decide import normalize
from engine.ivr.model import (
    Analyze,
    Answer,
    Condition,
    Gather,
    Goto,
    Hangup,
    Menu,
    MenuOption,
    Play,
    Record,
    Say,
    SetVars,
    Split,
    Step,
    Switch,
    Transfer,
    Variant,
    Webhook,
)
from engine.ivr.parse_queue import parse_queue
from engine.ivr.queueing import QueueCatalog
from engine.ivr.syntax import (
    CONTROL,
    DEFAULT_VOICE,
    DIALPLAN_WORD,
    ENDPOINT,
    ENV_NAME,
    MAX_SAY_CHARS,
    METHODS,
    NAME,
    NAME_CHARS,
    NUMBER,
    PROMPT,
    STEP_KINDS,
    URL,
    VOICE,
    FlowError,
    asr_plugin,
    boolean,
    expression,
    fields_of,
    input_kind,
    integer,
    label_ref,
    line_of,
    mapping,
    matching,
    number,
    only,
    opt_label,
    scalar,
    sound,
    template,
)
from engine.ivr.template import VAR
from engine.ivr.template import fields as template_fields


def parse_say(
    body: yaml.Node, src: str, what: str, line: int, voices: Collection[str] | None
) -> Say:
    text_node: yaml.Node = body
    voice_node: yaml.Node | None = None
    if isinstance(body, yaml.SequenceNode):
        raise FlowError(
            src, line_of(body), f"{what}: expected the text, or a mapping with text: and voice:"
        )
    if not isinstance(body, yaml.ScalarNode):
        f = mapping(body, src, what)
        only(f, {"text", "voice"}, src, what)
        if "text" not in f:
            raise FlowError(src, line_of(body), f"{what}.text: required (what to say)")
        text_node, voice_node = f["text"], f.get("voice")
    text = scalar(text_node, src, f"{what}.text")
    where = line_of(text_node)
    if not text.strip():
        raise FlowError(src, where, f"{what}.text: expected some words to say (got {text!r})")
    if len(text) > MAX_SAY_CHARS:
        raise FlowError(
            src,
            where,
            f"{what}.text: expected at most {MAX_SAY_CHARS} characters (got {len(text)})",
        )
    if CONTROL.search(text):
        raise FlowError(src, where, f"{what}.text: contains a control character")
    fields_of(text, src, where, f"{what}.text")
    voice = DEFAULT_VOICE
    if voice_node is not None:
        voice = matching(VOICE, voice_node, src, f"{what}.voice", "a TTS voice such as en")
    if voices is not None and voice.lower() not in voices:
        close = difflib.get_close_matches(voice.lower(), sorted(voices), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FlowError(
            src,
            line_of(voice_node) if voice_node is not None else line,
            f"{what}.voice: unknown TTS voice {voice!r}{hint} (`espeak-ng --voices` lists them)",
        )
    return Say(text=text, voice=voice, line=line)


def _gather(
    body: yaml.Node,
    src: str,
    what: str,
    line: int,
    voices: Collection[str] | None,
    refs: list[tuple[str, int, str]],
) -> Gather:
    f = mapping(body, src, what)
    only(
        f,
        {
            "into",
            "prompt",
            "say",
            "max_digits",
            "min_digits",
            "timeout_s",
            "speech_timeout_s",
            "terminators",
            "input",
            "min_confidence",
            "on_timeout",
            "on_invalid",
            "asr",
        },
        src,
        what,
    )
    if "into" not in f:
        raise FlowError(src, line_of(body), f"{what}.into: required (the variable to fill)")
    max_digits = (
        integer(f["max_digits"], src, f"{what}.max_digits", 1, 32) if "max_digits" in f else 1
    )
    min_digits = (
        integer(f["min_digits"], src, f"{what}.min_digits", 0, 32) if "min_digits" in f else 0
    )
    if min_digits > max_digits:
        raise FlowError(
            src, line_of(f["min_digits"]), f"{what}.min_digits: more than max_digits ({max_digits})"
        )
    terminators = "#"
    if "terminators" in f:
        terminators = scalar(f["terminators"], src, f"{what}.terminators")
        if any(ch not in "0123456789*#ABCD" for ch in terminators):
            raise FlowError(
                src,
                line_of(f["terminators"]),
                f"{what}.terminators: expected DTMF keys such as '#' (got {terminators!r})",
            )
    return Gather(
        into=matching(VAR, f["into"], src, f"{what}.into", "a variable name"),
        prompt=sound(f, "prompt", src, what),
        max_digits=max_digits,
        timeout_s=number(f["timeout_s"], src, f"{what}.timeout_s", 0.5, 120)
        if "timeout_s" in f
        else 5.0,
        terminators=terminators,
        line=line,
        min_digits=min_digits,
        input=input_kind(f, src, what, "dtmf"),
        say=parse_say(f["say"], src, f"{what}.say", line, voices) if "say" in f else None,
        speech_timeout_s=number(f["speech_timeout_s"], src, f"{what}.speech_timeout_s", 0.5, 120)
        if "speech_timeout_s" in f
        else 5.0,
        min_confidence=number(f["min_confidence"], src, f"{what}.min_confidence", 0, 1)
        if "min_confidence" in f
        else 0.0,
        on_timeout=opt_label(f, "on_timeout", src, what, refs),
        on_invalid=opt_label(f, "on_invalid", src, what, refs),
        asr=asr_plugin(f, src, what),
    )


def _menu(
    body: yaml.Node,
    src: str,
    what: str,
    line: int,
    voices: Collection[str] | None,
    refs: list[tuple[str, int, str]],
) -> Menu:
    f = mapping(body, src, what)
    only(
        f,
        {
            "prompt",
            "say",
            "options",
            "retries",
            "timeout_s",
            "input",
            "into",
            "invalid_say",
            "min_confidence",
            "on_invalid",
            "on_timeout",
            "asr",
        },
        src,
        what,
    )
    if "prompt" not in f and "say" not in f:
        raise FlowError(src, line_of(body), f"{what}: expected prompt: <sound> and/or say: <text>")
    node = f.get("options")
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        where = line_of(node) if node is not None else line_of(body)
        raise FlowError(
            src, where, f"{what}.options: expected a list such as [{{dtmf: '1', goto: sales}}]"
        )
    options: list[MenuOption] = []
    keys: set[str] = set()
    # A keyword (folded as the menu matches it) chooses the first option that lists it.
    chooses: dict[str, int] = {}
    for i, item in enumerate(node.value):
        ow = f"{what}.options[{i}]"
        o = mapping(item, src, ow)
        only(o, {"dtmf", "speech", "intent", "goto"}, src, ow)
        if "goto" not in o:
            raise FlowError(src, line_of(item), f"{ow}.goto: required (the step this option runs)")
        dtmf = ""
        if "dtmf" in o:
            dtmf = scalar(o["dtmf"], src, f"{ow}.dtmf")
            if not re.fullmatch(r"[0-9*#]{1,4}", dtmf):
                raise FlowError(
                    src, line_of(o["dtmf"]), f"{ow}.dtmf: expected 1-4 keys 0-9 * # (got {dtmf!r})"
                )
            if dtmf in keys:
                raise FlowError(src, line_of(o["dtmf"]), f"{ow}.dtmf: key {dtmf!r} used twice")
            keys.add(dtmf)
        words: list[str] = []
        if "speech" in o:
            sn = o["speech"]
            items = sn.value if isinstance(sn, yaml.SequenceNode) else [sn]
            for j, w in enumerate(items):
                word = scalar(w, src, f"{ow}.speech[{j}]").strip().lower()
                if not word or CONTROL.search(word):
                    raise FlowError(src, line_of(w), f"{ow}.speech[{j}]: expected a keyword")
                first = chooses.setdefault(normalize(word), i)
                if first != i:
                    raise FlowError(
                        src,
                        line_of(w),
                        f"{ow}.speech[{j}]: keyword {word!r} already chooses options[{first}]",
                    )
                words.append(word)
        intent = ""
        if "intent" in o:
            intent = matching(NAME, o["intent"], src, f"{ow}.intent", "an intent name")
        if not dtmf and not words and not intent:
            raise FlowError(src, line_of(item), f"{ow}: expected dtmf:, speech: and/or intent:")
        options.append(
            MenuOption(
                goto=label_ref(o["goto"], src, f"{ow}.goto", refs),
                dtmf=dtmf,
                speech=tuple(words),
                intent=intent,
                value=dtmf or (words[0] if words else intent),
            )
        )
    speechy = any(o.speech or o.intent for o in options)
    default_input = (
        "both" if speechy and any(o.dtmf for o in options) else ("speech" if speechy else "dtmf")
    )
    kind = input_kind(f, src, what, default_input)
    # Options the menu's input can never choose: an empty grammar, or keys not listened for.
    for i, opt in enumerate(options):
        deaf = (kind == "speech" and not (opt.speech or opt.intent)) or (
            kind == "dtmf" and not opt.dtmf
        )
        if deaf:
            lacks = "speech: or intent:" if kind == "speech" else "dtmf:"
            raise FlowError(
                src,
                line_of(node.value[i]),
                f"{what}.options[{i}]: no {lacks}, and the menu's input is {kind} "
                f"(the option could never be chosen; give it {lacks} or set input: both)",
            )
    return Menu(
        options=tuple(options),
        prompt=sound(f, "prompt", src, what),
        say=parse_say(f["say"], src, f"{what}.say", line, voices) if "say" in f else None,
        retries=integer(f["retries"], src, f"{what}.retries", 0, 9) if "retries" in f else 2,
        timeout_s=number(f["timeout_s"], src, f"{what}.timeout_s", 0.5, 120)
        if "timeout_s" in f
        else 5.0,
        input=kind,
        into=matching(VAR, f["into"], src, f"{what}.into", "a variable name")
        if "into" in f
        else "",
        invalid_say=parse_say(f["invalid_say"], src, f"{what}.invalid_say", line, voices)
        if "invalid_say" in f
        else None,
        min_confidence=number(f["min_confidence"], src, f"{what}.min_confidence", 0, 1)
        if "min_confidence" in f
        else 0.5,
        on_invalid=opt_label(f, "on_invalid", src, what, refs),
        on_timeout=opt_label(f, "on_timeout", src, what, refs),
        line=line,
        asr=asr_plugin(f, src, what),
    )


def _webhook(
    body: yaml.Node, src: str, what: str, line: int, refs: list[tuple[str, int, str]]
) -> Webhook:
    f = mapping(body, src, what)
    only(f, {"url", "method", "timeout_s", "body", "map", "secret_env", "on_error"}, src, what)
    if "url" not in f:
        raise FlowError(src, line_of(body), f"{what}.url: required (http:// or https://)")
    url = template(f["url"], src, f"{what}.url")
    if not URL.match(url):
        raise FlowError(src, line_of(f["url"]), f"{what}.url: expected an http:// or https:// URL")
    method = scalar(f["method"], src, f"{what}.method").upper() if "method" in f else "POST"
    if method not in METHODS:
        raise FlowError(src, line_of(f["method"]), f"{what}.method: expected GET or POST")
    payload: dict[str, str] = {}
    if "body" in f:
        for key, value in mapping(f["body"], src, f"{what}.body").items():
            payload[key] = template(value, src, f"{what}.body.{key}")
    var_paths: dict[str, str] = {}
    if "map" in f:
        for key, value in mapping(f["map"], src, f"{what}.map").items():
            if not VAR.match(key):
                raise FlowError(src, line_of(value), f"{what}.map: {key!r} is not a variable name")
            var_paths[key] = matching(
                re.compile(r"^[\w-]+(\.[\w-]+)*\Z"),
                value,
                src,
                f"{what}.map.{key}",
                "a dotted path in the JSON reply such as customer.level",
            )
    return Webhook(
        url=url,
        method=method,
        timeout_s=number(f["timeout_s"], src, f"{what}.timeout_s", 0.1, 30)
        if "timeout_s" in f
        else 3.0,
        body=payload,
        map=var_paths,
        secret_env=matching(
            ENV_NAME, f["secret_env"], src, f"{what}.secret_env", "an environment variable name"
        )
        if "secret_env" in f
        else "ENGINE_IVR_WEBHOOK_SECRET",
        on_error=opt_label(f, "on_error", src, what, refs),
        line=line,
    )


def _transfer(
    body: yaml.Node, src: str, what: str, line: int, refs: list[tuple[str, int, str]]
) -> Transfer:
    f = mapping(body, src, what)
    only(
        f,
        {"endpoint", "number", "trunk_group", "dialplan", "timeout_s", "on_error"},
        src,
        what,
    )
    kinds = [k for k in ("endpoint", "number", "dialplan") if k in f]
    if len(kinds) != 1:
        raise FlowError(
            src,
            line_of(body),
            f"{what}: expected exactly one of endpoint:, number: (with trunk_group:) or dialplan:",
        )
    endpoint = dial = group = context = exten = ""
    priority = 1
    if "endpoint" in f:
        endpoint = template(f["endpoint"], src, f"{what}.endpoint")
        if not template_fields(endpoint) and not ENDPOINT.match(endpoint):
            raise FlowError(
                src,
                line_of(f["endpoint"]),
                f"{what}.endpoint: expected an endpoint name such as 1001",
            )
    if "number" in f:
        dial = template(f["number"], src, f"{what}.number")
        if not template_fields(dial) and not NUMBER.match(dial):
            raise FlowError(
                src,
                line_of(f["number"]),
                f"{what}.number: expected digits, optionally after + (got {dial!r})",
            )
        if "trunk_group" not in f:
            raise FlowError(src, line_of(body), f"{what}.trunk_group: required with number:")
    if "trunk_group" in f:
        if "number" not in f:
            raise FlowError(
                src, line_of(f["trunk_group"]), f"{what}.trunk_group: only with number:"
            )
        group = matching(NAME, f["trunk_group"], src, f"{what}.trunk_group", "a trunk group name")
    if "dialplan" in f:
        d = mapping(f["dialplan"], src, f"{what}.dialplan")
        only(d, {"context", "exten", "priority"}, src, f"{what}.dialplan")
        for key in ("context", "exten"):
            if key not in d:
                raise FlowError(src, line_of(f["dialplan"]), f"{what}.dialplan.{key}: required")
        context = matching(
            DIALPLAN_WORD, d["context"], src, f"{what}.dialplan.context", "a context name"
        )
        exten = matching(DIALPLAN_WORD, d["exten"], src, f"{what}.dialplan.exten", "an extension")
        priority = (
            integer(d["priority"], src, f"{what}.dialplan.priority", 1, 999)
            if "priority" in d
            else 1
        )
    return Transfer(
        endpoint=endpoint,
        number=dial,
        trunk_group=group,
        context=context,
        exten=exten,
        priority=priority,
        timeout_s=number(f["timeout_s"], src, f"{what}.timeout_s", 1, 300)
        if "timeout_s" in f
        else 30.0,
        on_error=opt_label(f, "on_error", src, what, refs),
        line=line,
    )


def _split(
    body: yaml.Node, src: str, what: str, line: int, refs: list[tuple[str, int, str]]
) -> Split:
    f = mapping(body, src, what)
    only(f, {"name", "variants"}, src, what)
    if "name" not in f or "variants" not in f:
        raise FlowError(
            src,
            line_of(body),
            f"{what}: expected name: and variants: {{a: {{share: 50, goto: x}}}}",
        )
    name = matching(NAME, f["name"], src, f"{what}.name", "a test name")
    variants: list[Variant] = []
    for key, value in mapping(f["variants"], src, f"{what}.variants").items():
        vw = f"{what}.variants.{key}"
        if not NAME.match(key):
            raise FlowError(src, line_of(value), f"{vw}: {key!r} is not a variant name")
        v = mapping(value, src, vw)
        only(v, {"share", "goto"}, src, vw)
        if "share" not in v or "goto" not in v:
            raise FlowError(
                src, line_of(value), f"{vw}: expected share: <percent> and goto: <step>"
            )
        variants.append(
            Variant(
                name=key,
                share=integer(v["share"], src, f"{vw}.share", 0, 100),
                goto=label_ref(v["goto"], src, f"{vw}.goto", refs),
            )
        )
    total = sum(v.share for v in variants)
    if len(variants) < 2 or total != 100:
        raise FlowError(
            src,
            line_of(f["variants"]),
            f"{what}.variants: expected two or more shares adding up to 100 (got {total})",
        )
    return Split(name=name, variants=tuple(variants), line=line)


def parse_step(
    node: yaml.Node,
    src: str,
    index: int,
    voices: Collection[str] | None = None,
    catalog: QueueCatalog | None = None,
    refs: list[tuple[str, int, str]] | None = None,
) -> Step:
    refs = refs if refs is not None else []
    line = line_of(node)
    where = f"steps[{index}]"
    label = ""
    extra: dict[str, yaml.Node] = {}
    if isinstance(node, yaml.ScalarNode):
        kind, body = str(node.value), None
    else:
        items = mapping(node, src, where)
        if "id" in items:
            label = matching(NAME, items.pop("id"), src, f"{where}.id", f"a step id ({NAME_CHARS})")
        if "if" in items:
            extra = {k: items.pop(k) for k in ("then", "else") if k in items}
        kinds = [k for k in items if k in STEP_KINDS]
        if len(items) != 1:
            if len(kinds) == 1:
                bad = next(k for k in items if k not in STEP_KINDS)
                raise FlowError(
                    src, line_of(items[bad]), f"{where}.{kinds[0]}: unknown key {bad!r} beside it"
                )
            raise FlowError(src, line, f"{where}: expected one step kind, one of {STEP_KINDS}")
        kind, body = next(iter(items.items()))
        if (
            isinstance(body, yaml.ScalarNode)
            and body.tag.endswith(":null")
            and body.value in ("", "~", "null")
        ):
            body = None
    what = f"{where}.{kind}"
    if kind not in STEP_KINDS:
        raise FlowError(src, line, f"{where}: unknown step {kind!r}; expected one of {STEP_KINDS}")
    step = _step_body(kind, body, extra, src, what, line, voices, catalog, refs)
    if label:
        step = dataclasses.replace(step, label=label)
    return step


def _step_body(
    kind: str,
    body: yaml.Node | None,
    extra: dict[str, yaml.Node],
    src: str,
    what: str,
    line: int,
    voices: Collection[str] | None,
    catalog: QueueCatalog | None,
    refs: list[tuple[str, int, str]],
) -> Step:
    if kind == "answer":
        return Answer(line=line)
    if kind == "hangup":
        return Hangup(line=line)
    if body is None:
        raise FlowError(src, line, f"{what}: needs a value")
    if kind == "play":
        prompt = template(body, src, what)
        if not template_fields(prompt) and not PROMPT.match(prompt):
            raise FlowError(
                src,
                line_of(body),
                f"{what}: expected a sound file name such as demo-congrats (got {prompt!r})",
            )
        return Play(prompt, line)
    if kind == "say":
        return parse_say(body, src, what, line, voices)
    if kind == "gather":
        return _gather(body, src, what, line, voices, refs)
    if kind == "menu":
        return _menu(body, src, what, line, voices, refs)
    if kind == "queue":
        return parse_queue(body, src, what, line, catalog)
    if kind == "if":
        if "then" not in extra:
            raise FlowError(src, line, f"{what}: expected then: <step id> beside if:")
        return Condition(
            expr=expression(body, src, what),
            then=label_ref(extra["then"], src, f"{what}.then", refs),
            else_=label_ref(extra["else"], src, f"{what}.else", refs) if "else" in extra else "",
            line=line,
        )
    if kind == "switch":
        f = mapping(body, src, what)
        only(f, {"on", "cases", "default"}, src, what)
        if "on" not in f or "cases" not in f:
            raise FlowError(
                src, line_of(body), f"{what}: expected on: <expression> and cases: {{value: step}}"
            )
        cases = tuple(
            (k, label_ref(v, src, f"{what}.cases.{k}", refs))
            for k, v in mapping(f["cases"], src, f"{what}.cases").items()
        )
        if not cases:
            raise FlowError(
                src, line_of(f["cases"]), f"{what}.cases: expected at least one value: step"
            )
        return Switch(
            expr=expression(f["on"], src, f"{what}.on"),
            cases=cases,
            default=opt_label(f, "default", src, what, refs),
            line=line,
        )
    if kind == "goto":
        if isinstance(body, yaml.ScalarNode):
            return Goto(node=label_ref(body, src, what, refs), line=line)
        f = mapping(body, src, what)
        only(f, {"flow", "node"}, src, what)
        if "flow" not in f:
            raise FlowError(
                src, line_of(body), f"{what}: expected a step id, or flow: <name> (and node:)"
            )
        flow = matching(NAME, f["flow"], src, f"{what}.flow", "a flow name")
        node = matching(NAME, f["node"], src, f"{what}.node", "a step id") if "node" in f else ""
        return Goto(node=node, flow=flow, line=line)
    if kind == "webhook":
        return _webhook(body, src, what, line, refs)
    if kind == "transfer":
        return _transfer(body, src, what, line, refs)
    if kind == "record":
        f = mapping(body, src, what)
        only(f, {"into", "max_s", "beep", "silence_s", "on_error"}, src, what)
        return Record(
            into=matching(VAR, f["into"], src, f"{what}.into", "a variable name")
            if "into" in f
            else "record.path",
            max_s=number(f["max_s"], src, f"{what}.max_s", 1, 3600) if "max_s" in f else 60.0,
            beep=boolean(f["beep"], src, f"{what}.beep") if "beep" in f else True,
            silence_s=number(f["silence_s"], src, f"{what}.silence_s", 0, 60)
            if "silence_s" in f
            else 0.0,
            on_error=opt_label(f, "on_error", src, what, refs),
            line=line,
        )
    if kind == "split":
        return _split(body, src, what, line, refs)
    if kind == "analyze":
        f = mapping(body, src, what)
        only(f, {"text"}, src, what)
        if "text" not in f:
            raise FlowError(src, line_of(body), f"{what}.text: required (what to classify)")
        return Analyze(text=template(f["text"], src, f"{what}.text"), line=line)
    # set
    f = mapping(body, src, what)
    values = {}
    for key, value in f.items():
        if not VAR.match(key):
            raise FlowError(src, line_of(value), f"{what}: {key!r} is not a variable name")
        values[key] = template(value, src, f"{what}.{key}")
    return SetVars(values, line)
