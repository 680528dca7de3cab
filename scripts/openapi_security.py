"""Write the security parts of engine/api/openapi.json from their sources of truth.

- ``x-roles`` and the 403/429 answers of every operation, from ``engine.auth.matrix.RULES``;
- the 400 answer of every operation (an undeclared query parameter, engine/api/query_names.py);
- the tokens, audit, WebSocket ticket, webhooks and data-subject operations and their schemas;
- ``x-while-disk-full`` of every mutating operation and the 503 of the refused ones, from
  ``engine.api.disk_full.REFUSED_WHILE_DISK_FULL``.

Run after changing the route x role table or these routes::

    .venv/bin/python scripts/openapi_security.py

tests/api/test_rbac_matrix.py fails while the committed document differs from what this
script writes, so the table and the document cannot drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `engine` importable
    sys.path.insert(0, str(ROOT))

from engine.api.disk_full import REFUSED_WHILE_DISK_FULL  # noqa: E402
from engine.api.security_http import ACTION, ACTOR, AGENT_ID, LABEL  # noqa: E402
from engine.auth.matrix import RULES, Scope, normalize  # noqa: E402
from engine.webhooks.http import DESCRIPTION, URL_PATTERN  # noqa: E402
from engine.webhooks.policy import EVENT_TYPES  # noqa: E402

DOCUMENT = ROOT / "engine" / "api" / "openapi.json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: str | dict[str, Any], description: str) -> dict[str, Any]:
    body = _ref("schemas", schema) if isinstance(schema, str) else schema
    return {"description": description, "content": {"application/json": {"schema": body}}}


def _request(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref("schemas", schema)}}}


E = {
    code: _ref("responses", name)
    for code, name in (
        ("400", "E400"),
        ("401", "E401"),
        ("413", "E413"),
        ("415", "E415"),
        ("503", "E503Storage"),
    )
}
TS = {"type": "string", "format": "date-time"}
TS_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
ROLE = {"type": "string", "enum": ["admin", "supervisor", "agent", "integration", "auditor"]}

SCHEMAS: dict[str, Any] = {
    "TokenCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["label", "role"],
        "properties": {
            "label": {"type": "string", "pattern": LABEL},
            "role": ROLE,
            "agent_id": {
                "type": ["string", "null"],
                "pattern": AGENT_ID,
                "description": "Required for role agent, refused for the others; "
                "a configured agent id.",
            },
            "expires_in_s": {"type": ["integer", "null"], "minimum": 60, "maximum": 315360000},
            "rate_per_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 100000},
            "rate_burst": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000000},
        },
        "if": {"properties": {"role": {"const": "agent"}}},
        "then": {"required": ["agent_id"], "properties": {"agent_id": {"type": "string"}}},
        "else": {"properties": {"agent_id": {"type": "null"}}},
    },
    "Token": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "token_id",
            "label",
            "role",
            "agent_id",
            "rate_per_s",
            "rate_burst",
            "created_at",
            "created_by",
            "expires_at",
            "revoked_at",
        ],
        "properties": {
            "token_id": {"type": "string", "pattern": "^tok_[0-9a-f]{16}$"},
            "label": {"type": "string"},
            "role": ROLE,
            "agent_id": {"type": ["string", "null"]},
            "rate_per_s": {"type": ["number", "null"]},
            "rate_burst": {"type": ["integer", "null"]},
            "created_at": TS,
            "created_by": {"type": "string"},
            "expires_at": TS_OR_NULL,
            "revoked_at": TS_OR_NULL,
        },
    },
    "TokenList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["tokens"],
        "properties": {"tokens": {"type": "array", "items": _ref("schemas", "Token")}},
    },
    "AuditEntry": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "at",
            "actor",
            "role",
            "action",
            "target",
            "source_ip",
            "result",
            "details",
        ],
        "properties": {
            "id": {"type": "integer"},
            "at": TS,
            "actor": {"type": "string"},
            "role": {"type": "string"},
            "action": {"type": "string"},
            "target": {"type": "string"},
            "source_ip": {"type": "string"},
            "result": {"type": "string"},
            "details": {"type": "object"},
        },
    },
    "AuditPage": {
        "type": "object",
        "additionalProperties": False,
        "required": ["entries", "next_before_id"],
        "properties": {
            "entries": {"type": "array", "items": _ref("schemas", "AuditEntry")},
            "next_before_id": {"type": ["integer", "null"]},
        },
    },
    "EventsTicket": {
        "type": "object",
        "additionalProperties": False,
        "required": ["ticket", "expires_in_s"],
        "properties": {"ticket": {"type": "string"}, "expires_in_s": {"type": "integer"}},
    },
    "WebhookCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["url", "event_types"],
        "properties": {
            "url": {"type": "string", "pattern": URL_PATTERN, "maxLength": 2000},
            "event_types": {
                "type": "array",
                "minItems": 1,
                "maxItems": len(EVENT_TYPES),
                "uniqueItems": True,
                "items": {"type": "string", "enum": list(EVENT_TYPES)},
            },
            "description": {"type": "string", "pattern": DESCRIPTION},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100, "default": 12},
        },
    },
    "Webhook": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "subscription_id",
            "url",
            "event_types",
            "description",
            "max_attempts",
            "created_at",
            "created_by",
        ],
        "properties": {
            "subscription_id": {"type": "string", "pattern": "^whs_[0-9a-f]{16}$"},
            "url": {"type": "string"},
            "event_types": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
            "max_attempts": {"type": "integer"},
            "created_at": TS,
            "created_by": {"type": "string"},
        },
    },
    "WebhookList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["subscriptions"],
        "properties": {"subscriptions": {"type": "array", "items": _ref("schemas", "Webhook")}},
    },
    "WebhookDeleted": {
        "type": "object",
        "additionalProperties": False,
        "required": ["subscription_id", "deleted"],
        "properties": {"subscription_id": {"type": "string"}, "deleted": {"type": "boolean"}},
    },
    "WebhookDelivery": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "delivery_id",
            "subscription_id",
            "event_id",
            "type",
            "state",
            "attempts",
            "next_at",
            "last_status",
            "last_error",
            "delivered_at",
            "created_at",
        ],
        "properties": {
            "delivery_id": {"type": "integer"},
            "subscription_id": {"type": "string"},
            "event_id": {"type": "string"},
            "type": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"},
            "next_at": TS,
            "last_status": {"type": ["integer", "null"]},
            "last_error": {"type": "string"},
            "delivered_at": TS_OR_NULL,
            "created_at": TS,
        },
    },
    "WebhookDeliveryPage": {
        "type": "object",
        "additionalProperties": False,
        "required": ["deliveries", "next_after_id"],
        "properties": {
            "deliveries": {"type": "array", "items": _ref("schemas", "WebhookDelivery")},
            "next_after_id": {"type": ["integer", "null"]},
        },
    },
    "WebhookReplay": {
        "type": "object",
        "additionalProperties": False,
        "required": ["subscription_id", "replayed"],
        "properties": {"subscription_id": {"type": "string"}, "replayed": {"type": "integer"}},
    },
}


_SUBJECT = {
    "phone": {
        "type": "string",
        "minLength": 1,
        "maxLength": 64,
        "description": "The person's phone number: E.164 (+14155550100), or national in "
        "`region`; parsed as contact lists are (phonenumbers). 400 `invalid-phone` otherwise.",
    },
    "region": {
        "anyOf": [_ref("schemas", "Region"), {"type": "null"}],
        "description": "Region of a number written without +CC; default [privacy] "
        "default_region (US).",
    },
}
SCHEMAS["DataSubjectExport"] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["phone"],
    "properties": {
        **_SUBJECT,
        "include_audio": {
            "type": "boolean",
            "default": False,
            "description": "Add each ready recording's decrypted audio (audio/<id>.wav).",
        },
    },
}
SCHEMAS["DataSubjectErase"] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["phone"],
    "properties": _SUBJECT,
}
_COUNT = {"type": "integer", "minimum": 0}
SCHEMAS["DataSubjectErased"] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "phone",
        "pseudonym",
        "complete",
        "contacts_deleted",
        "attempts_pseudonymised",
        "cdrs_pseudonymised",
        "webhook_events_scrubbed",
        "recordings_shredded",
        "recording_files_removed",
        "recordings_held",
        "calls_in_progress",
        "dnc_added",
    ],
    "properties": {
        "phone": {"type": "string", "description": "The number, E.164"},
        "pseudonym": {
            "type": "string",
            "pattern": "^anon-[0-9a-f]{32}$",
            "description": "What replaced the number in CDRs and attempts (keyed HMAC)",
        },
        "complete": {
            "type": "boolean",
            "description": "False while a recording is under legal hold (recordings_held) or "
            "a call of the number is in progress: run the erase again later",
        },
        "contacts_deleted": _COUNT,
        "attempts_pseudonymised": _COUNT,
        "cdrs_pseudonymised": _COUNT,
        "webhook_events_scrubbed": _COUNT,
        "recordings_shredded": _COUNT,
        "recording_files_removed": _COUNT,
        "recordings_held": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        "calls_in_progress": _COUNT,
        "dnc_added": {"type": "boolean"},
    },
}


def _with(base: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``SCHEMAS[base]`` plus one required property (a closed object cannot be extended
    with allOf)."""
    out: dict[str, Any] = json.loads(json.dumps(SCHEMAS[base]))
    out["required"].append(name)
    out["properties"][name] = schema
    return out


SCHEMAS["TokenCreated"] = _with(
    "Token", "token", {"type": "string", "description": "Shown once; only its SHA-256 is stored."}
)
SCHEMAS["WebhookCreated"] = _with(
    "Webhook", "secret", {"type": "string", "description": "The HMAC-SHA256 key; shown once."}
)

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
DISK_FULL = (
    "or the disk under `<data_dir>/outbox` refuses journal writes (full or read-only; "
    "`details.outbox` names the directory, `details.journals` the journals): nothing was done, "
    'retry once space is freed (docs/durability.md "The outbox")'
)
#: The 503 of an operation a full outbox disk refuses, by the 503 it has otherwise.
DISK_FULL_503 = {"E503": "E503Outbox", "E503Storage": "E503StorageOutbox"}
MUTATING = ("post", "put", "patch", "delete")

RESPONSES: dict[str, Any] = {
    "E503Outbox": {
        "description": "Unavailable, retry later: `storage-unavailable` (PostgreSQL or Redis "
        f"down or saturated, {DISK_FULL}), `switch-unavailable` (the switch link is down), or, "
        "with several engines (`[cluster]`), `switch-not-owned` / `queue-not-owned` (another "
        "engine owns that switch link or queue; details.lease names its lease)",
        "headers": _RETRY_AFTER,
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    },
    "E503StorageOutbox": {
        "description": "`storage-unavailable`: PostgreSQL or Redis is down or saturated, "
        + DISK_FULL,
        "headers": _RETRY_AFTER,
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    },
    "E403": {
        "description": "`forbidden`: the token's role may not call this operation (see "
        "`x-roles`); `not-own-resource`: an agent token acting on another agent or its calls",
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    },
    "E429": {
        "description": "`rate-limited`: this token's request rate is over its limit",
        "headers": {
            "Retry-After": {
                "description": "Whole seconds to wait",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    },
    "E404Security": {
        "description": "`token-not-found`, `webhook-not-found`, `delivery-not-found`",
        "content": {"application/json": {"schema": _ref("schemas", "Error")}},
    },
}

PARAMS: dict[str, Any] = {
    "TokenId": {
        "name": "token_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 100},
    },
    "SubscriptionId": {
        "name": "subscription_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 100},
    },
    "DeliveryId": {
        "name": "delivery_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    },
}


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


PATHS: dict[str, Any] = {
    "/v1/events/ticket": {
        "post": {
            "operationId": "eventsTicket",
            "summary": "A single-use ticket that opens the event WebSocket (`/v1/events?ticket=`)",
            "responses": {
                "201": _json("EventsTicket", "The ticket"),
                "401": E["401"],
                "503": E["503"],
            },
        }
    },
    "/v1/tokens": {
        "post": {
            "operationId": "createToken",
            "summary": "Create an API token (shown once)",
            "requestBody": _request("TokenCreate"),
            "responses": {
                "201": _json("TokenCreated", "The token"),
                "400": E["400"],
                "401": E["401"],
                "413": E["413"],
                "415": E["415"],
                "503": E["503"],
            },
        },
        "get": {
            "operationId": "listTokens",
            "summary": "API tokens created through the API (never the tokens themselves)",
            "parameters": [_q("include_revoked", {"type": "string", "enum": ["true", "false"]})],
            "responses": {
                "200": _json("TokenList", "The tokens"),
                "400": E["400"],
                "401": E["401"],
                "503": E["503"],
            },
        },
    },
    "/v1/tokens/{token_id}": {
        "parameters": [_ref("parameters", "TokenId")],
        "delete": {
            "operationId": "revokeToken",
            "summary": "Revoke a token (every engine refuses it within token_cache_ttl_s)",
            "responses": {
                "200": _json("Token", "The revoked token"),
                "401": E["401"],
                "404": _ref("responses", "E404Security"),
                "503": E["503"],
            },
        },
    },
    "/v1/audit": {
        "get": {
            "operationId": "listAudit",
            "summary": "The audit trail, newest first",
            "parameters": [
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                _q("before_id", {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}),
                _q("actor", {"type": "string", "pattern": ACTOR.pattern}),
                _q("action", {"type": "string", "pattern": ACTION.pattern}),
            ],
            "responses": {
                "200": _json("AuditPage", "Audit entries"),
                "400": E["400"],
                "401": E["401"],
                "503": E["503"],
            },
        }
    },
    "/v1/webhooks": {
        "post": {
            "operationId": "createWebhook",
            "summary": "Subscribe a URL to event types (the signing secret is shown once)",
            "requestBody": _request("WebhookCreate"),
            "responses": {
                "201": _json("WebhookCreated", "The subscription"),
                "400": E["400"],
                "401": E["401"],
                "413": E["413"],
                "415": E["415"],
                "503": E["503"],
            },
        },
        "get": {
            "operationId": "listWebhooks",
            "summary": "Webhook subscriptions",
            "responses": {
                "200": _json("WebhookList", "The subscriptions"),
                "401": E["401"],
                "503": E["503"],
            },
        },
    },
    "/v1/webhooks/{subscription_id}": {
        "parameters": [_ref("parameters", "SubscriptionId")],
        "get": {
            "operationId": "getWebhook",
            "summary": "One webhook subscription",
            "responses": {
                "200": _json("Webhook", "The subscription"),
                "401": E["401"],
                "404": _ref("responses", "E404Security"),
                "503": E["503"],
            },
        },
        "delete": {
            "operationId": "deleteWebhook",
            "summary": "Delete a subscription: nothing more is sent to it",
            "responses": {
                "200": _json("WebhookDeleted", "Deleted"),
                "401": E["401"],
                "404": _ref("responses", "E404Security"),
                "503": E["503"],
            },
        },
    },
    "/v1/webhooks/{subscription_id}/deliveries": {
        "parameters": [_ref("parameters", "SubscriptionId")],
        "get": {
            "operationId": "listWebhookDeliveries",
            "summary": "A subscription's deliveries, oldest first (state=dead: the dead letters)",
            "parameters": [
                _q("state", {"type": "string", "enum": ["pending", "delivered", "dead"]}),
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                _q("after_id", {"type": "integer", "minimum": 0, "maximum": 9223372036854775807}),
            ],
            "responses": {
                "200": _json("WebhookDeliveryPage", "Deliveries"),
                "400": E["400"],
                "401": E["401"],
                "404": _ref("responses", "E404Security"),
                "503": E["503"],
            },
        },
    },
    "/v1/webhooks/{subscription_id}/replay": {
        "parameters": [_ref("parameters", "SubscriptionId")],
        "post": {
            "operationId": "replayWebhookDeadLetters",
            "summary": "Send every dead-lettered delivery of a subscription again",
            "responses": {
                "200": _json("WebhookReplay", "How many"),
                "401": E["401"],
                "404": _ref("responses", "E404Security"),
                "503": E["503"],
            },
        },
    },
    "/v1/webhooks/deliveries/{delivery_id}/replay": {
        "parameters": [_ref("parameters", "DeliveryId")],
        "post": {
            "operationId": "replayWebhookDelivery",
            "summary": "Send one dead-lettered delivery again",
            "responses": {
                "200": _json("WebhookReplay", "Replayed"),
                "401": E["401"],
                "404": _ref("responses", "E404Security"),
                "409": _json("Error", "`delivery-not-dead`"),
                "503": E["503"],
            },
        },
    },
}

PATHS["/v1/data-subjects/export"] = {
    "post": {
        "operationId": "exportDataSubject",
        "summary": "Everything held about one phone number, as a zip (GDPR/PIPL access)",
        "description": "A zip streamed as it is made: manifest.json, contacts.json, "
        "attempts.json, cdrs.json, recordings.json, dnc.json and, with include_audio, "
        "audio/<recording_id>.wav (decrypted; a recording that fails authentication is listed "
        "in the manifest's audio_errors instead). Audited (action data-subject.export, the "
        "number's pseudonym as target). See docs/privacy.md.",
        "requestBody": _request("DataSubjectExport"),
        "responses": {
            "200": {
                "description": "The archive",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            "400": E["400"],
            "401": E["401"],
            "413": E["413"],
            "415": E["415"],
            "503": E["503"],
        },
    }
}
PATHS["/v1/data-subjects/erase"] = {
    "post": {
        "operationId": "eraseDataSubject",
        "summary": "Erase one phone number's data (GDPR/PIPL erasure); idempotent",
        "description": "Deletes the number's contacts, crypto-shreds its calls' recordings "
        "(legal holds excepted: listed in recordings_held), replaces the number in CDRs, "
        "attempts and stored webhook events by its keyed pseudonym, and adds it to the global "
        "DNC list, in one transaction; then removes the recordings' files. Run it again "
        "after a crash, a lifted hold or a call in progress: it finishes the job. Audited "
        "(action data-subject.erase). See docs/privacy.md.",
        "requestBody": _request("DataSubjectErase"),
        "responses": {
            "200": _json("DataSubjectErased", "What was done"),
            "400": E["400"],
            "401": E["401"],
            "413": E["413"],
            "415": E["415"],
            "503": E["503"],
        },
    }
}

EVENTS_AUTH = (
    "Authenticate with `Authorization: Bearer <token>`, or (browsers, which cannot set "
    "headers on a handshake) offer the subprotocols `telephony-engine.v1` and "
    "`bearer.<token>` (the server selects `telephony-engine.v1`), or pass a single-use "
    "`ticket` from `POST /v1/events/ticket`. A token in the URL (`?token=`) is refused "
    "(401 `token-in-url-refused`)."
)
INFO = (
    "Control API of the telephony engine. Every endpoint except the health probes, this "
    "document and the reference page (`/v1/docs`) needs `Authorization: Bearer <token>`: a "
    "bootstrap admin token from telephony-config/engine.toml [api], or a token created with "
    "`POST /v1/tokens`. Each operation's `x-roles` lists the roles that may call it "
    "(`own`: an agent token, on its own agent id or its own calls); others get 403. Each "
    "token has a rate limit (429 with `Retry-After`). Request bodies are JSON sent as "
    "`Content-Type: application/json` (415 otherwise), at most 65536 bytes (413). Errors are "
    "JSON objects with a stable kebab-case `error_id`, a human `message` and `details`. Every "
    "503 carries `Retry-After`: `storage-unavailable` (PostgreSQL or Redis down or "
    "saturated), `switch-unavailable`, `trunks-unavailable`, `draining` (the engine is "
    "shutting down), `storage-unavailable` also while the disk under `<data_dir>/outbox` "
    "refuses journal writes (full or read-only), on the operations marked "
    "`x-while-disk-full: refused` (those that accept new work or data; every mutating "
    "operation is marked `refused` or `served`), `switch-not-owned` and `queue-not-owned` "
    "(several engines: another "
    "engine owns that switch link or queue), and `owner-unknown`, `owner-unreachable` or "
    "`owner-moved` (a command for a call, agent, queue or campaign another engine owns could "
    "not be forwarded to it; an answer that was forwarded carries `X-Engine-Served-By`). "
    "A 405 lists the allowed methods in `Allow`. A query parameter an operation does not "
    "declare is refused with 400 `invalid-query` (naming it), never ignored. The document "
    "served by a running engine lists its configured switches, trunk groups and trunks as `enum`s."
)


def apply(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the security parts written from their sources (idempotent)."""
    doc["info"]["description"] = INFO
    doc["components"]["schemas"].update(json.loads(json.dumps(SCHEMAS)))
    doc["components"]["responses"].update(json.loads(json.dumps(RESPONSES)))
    doc["components"].setdefault("parameters", {}).update(json.loads(json.dumps(PARAMS)))
    doc["paths"].update(json.loads(json.dumps(PATHS)))
    events = doc["paths"]["/v1/events"]["get"]
    text = events["description"]
    for old in (" Browsers may pass the token as `?token=`.", " " + EVENTS_AUTH):
        text = text.replace(old, "")
    first, _, rest = text.partition(" Trunk events:")
    events["description"] = f"{first} {EVENTS_AUTH} Trunk events:{rest}"
    events["parameters"] = [p for p in events["parameters"] if p["name"] not in ("token", "ticket")]
    events["parameters"].append(
        _q(
            "ticket",
            {"type": "string", "maxLength": 64},
            "A ticket from `POST /v1/events/ticket` (single use).",
        )
    )
    by_key = {r.key: r for r in RULES}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            # A query parameter the operation does not declare is refused on every route
            # (engine/api/query_names.py: 400 `invalid-query`), public ones included.
            op["responses"].setdefault("400", _ref("responses", "E400"))
            if method in MUTATING:
                _disk_full(method, path, op)
            op["responses"] = dict(sorted(op["responses"].items()))
            rule = by_key.get((method.upper(), normalize(path)))
            if rule is None or rule.public:
                op.pop("x-roles", None)
                continue
            op["x-roles"] = {
                role.value: scope.value
                for role, scope in sorted(rule.roles.items(), key=lambda kv: kv[0].value)
                if scope in (Scope.ANY, Scope.OWN)
            }
            op["responses"]["403"] = _ref("responses", "E403")
            op["responses"]["429"] = _ref("responses", "E429")
            op["responses"] = dict(sorted(op["responses"].items()))
    return doc


def _disk_full(method: str, path: str, op: dict[str, Any]) -> None:
    """Whether a full outbox disk refuses the operation (engine/api/disk_full.py); a refused
    one documents that 503 (E503Trunks, POST /v1/calls's own, names it already)."""
    refused = (method.upper(), path) in REFUSED_WHILE_DISK_FULL
    op["x-while-disk-full"] = "refused" if refused else "served"
    ref = op["responses"].get("503", {}).get("$ref", "").rsplit("/", 1)[-1]
    back = {v: k for k, v in DISK_FULL_503.items()}
    if refused and ref != "E503Trunks" and ref not in back:
        op["responses"]["503"] = _ref("responses", DISK_FULL_503.get(ref, "E503Outbox"))
    if not refused and ref in back:
        op["responses"]["503"] = _ref("responses", back[ref])


def main() -> int:
    doc = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    DOCUMENT.write_text(
        json.dumps(apply(doc), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
