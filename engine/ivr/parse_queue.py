"""The ``queue`` step: parsed and checked against the ACD's queues and intents."""

from __future__ import annotations

import math

import yaml

from engine.ivr.model import EnterQueue, IntentChoice
from engine.ivr.queueing import QueueCatalog
from engine.ivr.syntax import (
    CONTROL,
    CUSTOMER_KEY,
    MAX_FEATURES,
    MAX_PRIORITY,
    NAME,
    NAME_CHARS,
    PRIORITY_WORDS,
    TAG,
    FlowError,
    integer,
    line_of,
    mapping,
    matching,
    only,
    scalar,
    suggest,
    template,
)
from engine.ivr.template import VAR


def _known_intent(node: yaml.Node, src: str, what: str, catalog: QueueCatalog | None) -> str:
    intent = matching(NAME, node, src, what, f"an intent name ({NAME_CHARS})")
    if catalog is not None and intent not in catalog.intents:
        raise FlowError(
            src,
            line_of(node),
            f"{what}: intent {intent!r} maps to no queue ([acd] intents in engine.toml has "
            f"{sorted(catalog.intents) or 'none'}){suggest(intent, catalog.intents)}",
        )
    return intent


def _choice(node: yaml.Node, src: str, what: str, catalog: QueueCatalog | None) -> IntentChoice:
    f = mapping(node, src, what)
    only(f, {"from", "map", "default"}, src, what)
    if "from" not in f:
        raise FlowError(
            src,
            line_of(node),
            f"{what}: expected an intent name, or from: <variable> (and map: {{value: intent}})",
        )
    var = matching(VAR, f["from"], src, f"{what}.from", "a variable name")
    choices: dict[str, str] = {}
    if "map" in f:
        for key, value in mapping(f["map"], src, f"{what}.map").items():
            if not key or CONTROL.search(key):
                raise FlowError(src, line_of(value), f"{what}.map: {key!r} is not a value to match")
            choices[key] = _known_intent(value, src, f"{what}.map.{key}", catalog)
        if not choices:
            raise FlowError(
                src, line_of(f["map"]), f"{what}.map: expected at least one value: intent"
            )
    default = (
        _known_intent(f["default"], src, f"{what}.default", catalog) if "default" in f else None
    )
    return IntentChoice(var=var, choices=choices, default=default)


def parse_queue(
    body: yaml.Node, src: str, what: str, line: int, catalog: QueueCatalog | None
) -> EnterQueue:
    f = mapping(body, src, what)
    only(f, {"queue", "intent", "tags", "priority", "features", "customer"}, src, what)
    if "queue" not in f and "intent" not in f:
        raise FlowError(src, line_of(body), f"{what}: expected queue: <name> or intent: <intent>")
    queue = None
    if "queue" in f:
        queue = matching(NAME, f["queue"], src, f"{what}.queue", "a queue name")
        if catalog is not None and queue not in catalog.queues:
            raise FlowError(
                src,
                line_of(f["queue"]),
                f"{what}.queue: no queue named {queue!r} ([[queues]] in engine.toml has "
                f"{sorted(catalog.queues) or 'none'}){suggest(queue, catalog.queues)}",
            )
    intent, choice = None, None
    if "intent" in f:
        if isinstance(f["intent"], yaml.MappingNode):
            choice = _choice(f["intent"], src, f"{what}.intent", catalog)
        else:
            intent = _known_intent(f["intent"], src, f"{what}.intent", catalog)
    tags: list[str] = []
    if "tags" in f:
        node = f["tags"]
        if not isinstance(node, yaml.SequenceNode):
            raise FlowError(src, line_of(node), f"{what}.tags: expected a list such as [vip]")
        for i, t in enumerate(node.value):
            tags.append(matching(TAG, t, src, f"{what}.tags[{i}]", "a tag such as vip"))
    priority = None
    if "priority" in f:
        word = scalar(f["priority"], src, f"{what}.priority")
        priority = PRIORITY_WORDS.get(word) or integer(
            f["priority"], src, f"{what}.priority", 1, MAX_PRIORITY
        )
    features = None
    if "features" in f:
        node = f["features"]
        if not isinstance(node, yaml.SequenceNode) or not 1 <= len(node.value) <= MAX_FEATURES:
            raise FlowError(
                src, line_of(node), f"{what}.features: expected a list of 1-{MAX_FEATURES} numbers"
            )
        nums = []
        for i, n in enumerate(node.value):
            text = scalar(n, src, f"{what}.features[{i}]")
            try:
                num = float(text)
            except ValueError:
                num = float("nan")
            if not math.isfinite(num):
                raise FlowError(
                    src, line_of(n), f"{what}.features[{i}]: expected a number (got {text!r})"
                )
            nums.append(num)
        sizes = catalog.feature_sizes if catalog is not None else ()
        if sizes and len(nums) not in sizes:
            raise FlowError(
                src,
                line_of(node),
                f"{what}.features: {len(nums)} numbers, expected {min(sizes)} (the length of "
                "the agents' capability vectors)",
            )
        features = tuple(nums)
    customer: dict[str, str] = {}
    if "customer" in f:
        for key, value in mapping(f["customer"], src, f"{what}.customer").items():
            if not CUSTOMER_KEY.match(key):
                raise FlowError(
                    src,
                    line_of(value),
                    f"{what}.customer: {key!r} is not a key (a letter, then letters, digits or _)",
                )
            customer[key] = template(value, src, f"{what}.customer.{key}")
    return EnterQueue(
        queue=queue,
        intent=intent,
        choice=choice,
        tags=tuple(tags),
        priority=priority,
        features=features,
        customer=customer,
        line=line,
    )
