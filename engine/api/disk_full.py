"""A full outbox disk, API half: while the disk under ``<data_dir>/outbox`` refuses journal
writes (full or read-only), every route that *accepts* something the engine promises never
to lose answers ``503 storage-unavailable`` with ``Retry-After``, before its body is read or
anything is done; every other route keeps working (docs/durability.md "The outbox").

What the engine accepts is journalled in the outbox first (or written to PostgreSQL, with its
audit row journalled); a journal the disk refuses keeps its records in memory only, and a
crash then loses them. So a route that starts new work or records new data is refused while
the disk is full, and the client retries rather than believe it was accepted.

Kept, per route family (why):

- reads (GET), health, readiness, metrics, the OpenAPI document: nothing is accepted;
- tokens and event tickets: a login, a revocation during an outage must work;
- the control of live calls (hangup, redirect, DTMF, their recording's start/stop/pause/
  resume): a supervisor must be able to act on calls that are up; their records are those
  of a call already in progress, kept in the journal's in-memory tail like the hangup's;
- what stops or sheds work: a campaign's pause and stop, an agent's logout, pause,
  force-pause, force-logout and the end of a spy, a trunk's drain (and enable, its undo);
  refusing them would make the outage worse;
- ``POST /v1/admin/reload`` (operations) and ``POST /v1/data-subjects/export`` (a read sent
  as POST so the phone number stays out of URLs).

:data:`REFUSED_WHILE_DISK_FULL` is the refused list; the OpenAPI document marks every
mutating operation ``x-while-disk-full: refused | served`` and a test holds the two equal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.api.errors import Handler
from engine.calls.errors import OutboxUnwritable

#: (method, route) of every request refused while the outbox's disk refuses writes.
REFUSED_WHILE_DISK_FULL: frozenset[tuple[str, str]] = frozenset(
    {
        # Calls: a new call, a call into a queue, a campaign call's disposition.
        ("POST", "/v1/calls"),
        ("POST", "/v1/queues/{name}/calls"),
        ("POST", "/v1/calls/{call_id}/disposition"),
        # Campaigns: created, changed, started; a preview accepted (a call) or skipped
        # (an attempt's outcome); contacts imported; do-not-call lists changed.
        ("POST", "/v1/campaigns"),
        ("PATCH", "/v1/campaigns/{id}"),
        ("POST", "/v1/campaigns/{id}/start"),
        ("POST", "/v1/campaigns/{id}/previews/{attempt_id}/accept"),
        ("POST", "/v1/campaigns/{id}/previews/{attempt_id}/skip"),
        ("POST", "/v1/campaigns/{id}/contacts"),
        ("POST", "/v1/dnc"),
        ("DELETE", "/v1/dnc"),
        ("POST", "/v1/campaigns/{id}/dnc"),
        ("DELETE", "/v1/campaigns/{id}/dnc"),
        # Agents that take new work: login, ready, a move to other queues, a spy (a new leg).
        ("POST", "/v1/agents/{agent_id}/login"),
        ("POST", "/v1/agents/{agent_id}/ready"),
        ("POST", "/v1/agents/{agent_id}/move"),
        ("POST", "/v1/agents/{agent_id}/spy"),
        # Recordings: a legal hold set or lifted, a deletion.
        ("PATCH", "/v1/recordings/{recording_id}"),
        ("DELETE", "/v1/recordings/{recording_id}"),
        # Webhooks: subscriptions and replays (deliveries queued in the outbox).
        ("POST", "/v1/webhooks"),
        ("DELETE", "/v1/webhooks/{subscription_id}"),
        ("POST", "/v1/webhooks/{subscription_id}/replay"),
        ("POST", "/v1/webhooks/deliveries/{delivery_id}/replay"),
        # Privacy: an erasure.
        ("POST", "/v1/data-subjects/erase"),
    }
)


def route_key(request: web.Request) -> tuple[str, str] | None:
    """(method, canonical route) of the route ``request`` matched; None when none did."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    return request.method, resource.canonical


def refuses_while_disk_full(request: web.Request) -> bool:
    return route_key(request) in REFUSED_WHILE_DISK_FULL


def disk_full_middleware(
    unwritable: Callable[[], list[str]], outbox_dir: Path | None
) -> Middleware:
    """``unwritable``: the journals whose disk refuses writes now (``Outbox.unwritable``);
    ``outbox_dir``: their directory, named in the answer."""
    where = str(outbox_dir) if outbox_dir is not None else "<data_dir>/outbox"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Checked before the body is read; only the refused routes ask the journals.
        if refuses_while_disk_full(request) and (journals := unwritable()):
            raise OutboxUnwritable(
                f"the disk under the outbox directory {where} is full or read-only: it refuses"
                f" journal writes ({', '.join(journals)}), so {request.method} {request.path}"
                " was not accepted and nothing was done; retry once space is freed there",
                details={
                    "outbox": where,
                    "journals": journals,
                    "retry_after_s": OutboxUnwritable.retry_after_s,
                },
            )
        return await handler(request)

    return middleware
