"""The doctor's verdicts: pure functions from what a probe measured to OK / WARN / FAIL.

Every check of ``python -m engine doctor`` is a probe (engine/doctor/probes.py: sockets,
queries, statvfs, each under a timeout) followed by one of these functions, so the rules and
their thresholds are tested without any server (tests/unit/test_doctor_verdicts.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class Status(Enum):
    OK = "OK"
    WARN = "WARN"  # works, but not as it should in production
    FAIL = "FAIL"  # the engine cannot work (or cannot be shown to): exit status 1
    SKIP = "SKIP"  # not applicable to this deployment, or not built yet


@dataclass(frozen=True)
class Finding:
    check: str  # e.g. "switch asterisk-1: AMI login"
    status: Status
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f" | fix: {self.fix}" if self.fix and self.status is not Status.OK else ""
        return f"{self.status.value:<4}  {self.check}: {self.message}{fix}"


def ok(check: str, message: str) -> Finding:
    return Finding(check, Status.OK, message)


# The AMI actions the Asterisk driver sends (engine/pbx/asterisk/driver.py and ami_client.py).
# Login, Logoff and Challenge need no permission.
AMI_ACTIONS: tuple[str, ...] = (
    "Originate",
    "Hangup",
    "Redirect",
    "Bridge",
    "Setvar",
    "Getvar",
    "PlayDTMF",
    "MixMonitor",
    "MixMonitorMute",
    "StopMixMonitor",
    "CoreShowChannels",
    "PJSIPShowEndpoints",
    "Filter",
    "Ping",
)

# Clock skew: the engine stamps CDRs, events and attempts with its own clock; PostgreSQL's
# now() stamps audit rows and token expiry; a switch's clock is in its own logs and CDRs.
# NTP keeps hosts within milliseconds, so a second is already a broken time source.
CLOCK_WARN_S = 0.5
CLOCK_FAIL_S = 2.0

# The outbox (<data_dir>/outbox) grows while PostgreSQL or Redis is away: ~1 KiB per call
# event and CDR. A full disk there loses what the engine accepted (docs/durability.md).
DISK_FAIL_BYTES = 1 << 30  # 1 GiB
DISK_WARN_BYTES = 5 << 30  # 5 GiB
DISK_FAIL_FRACTION = 0.05
DISK_WARN_FRACTION = 0.10


def ami_permissions(check: str, listed: Iterable[str]) -> Finding:
    """``ListCommands`` answers only the actions this AMI user may send (manager.c lists an
    action when the user's write permissions include one of its classes, or it needs none)."""
    have = {name.lower() for name in listed}
    missing = [a for a in AMI_ACTIONS if a.lower() not in have]
    if not missing:
        return ok(check, f"the user may send the {len(AMI_ACTIONS)} actions the engine uses")
    return Finding(
        check,
        Status.FAIL,
        f"the user may not send {', '.join(missing)}",
        "give the engine's user `write = all` (or at least system,call,originate) "
        "in manager.conf, then `manager reload` (telephony-config/asterisk/manager.conf)",
    )


def ami_event_filters(check: str, filters_enabled: bool, count: int) -> Finding:
    """The driver adds its event filters with ``Filter`` after each login; a refusal makes it
    reconnect without them (engine/pbx/asterisk/ami_client.py) and take every event."""
    if filters_enabled:
        return ok(check, f"Asterisk accepted the engine's {count} event filters")
    return Finding(
        check,
        Status.WARN,
        "Asterisk refused the engine's Filter actions: it will receive every event "
        "(~47 per call instead of ~10), which costs CPU on both sides",
        "give the user `write = system` (Filter needs it) or copy the eventfilter lines of "
        "telephony-config/asterisk/manager.conf into the user's section",
    )


def clock_skew(check: str, offset_s: float, uncertainty_s: float = 0.0) -> Finding:
    """``offset_s``: the other clock minus ours; ``uncertainty_s``: half the round trip."""
    skew = max(0.0, abs(offset_s) - uncertainty_s)
    way = "ahead of" if offset_s > 0 else "behind" if offset_s < 0 else "same as"
    text = f"{abs(offset_s):.3f} s {way} this host (±{uncertainty_s:.3f} s)"
    fix = "run an NTP client (chrony or systemd-timesyncd) on both hosts against the same servers"
    if skew >= CLOCK_FAIL_S:
        return Finding(check, Status.FAIL, text, fix)
    if skew >= CLOCK_WARN_S:
        return Finding(check, Status.WARN, text, fix)
    return ok(check, text)


def disk_space(check: str, path: str, free_bytes: int, total_bytes: int) -> Finding:
    fraction = free_bytes / total_bytes if total_bytes else 0.0
    text = f"{free_bytes / (1 << 30):.1f} GiB free ({fraction:.0%}) on {path}"
    fix = (
        "free space or move [engine] data_dir to a larger volume: while PostgreSQL or Redis is "
        "away the outbox holds every CDR and event there"
    )
    if free_bytes < DISK_FAIL_BYTES or fraction < DISK_FAIL_FRACTION:
        return Finding(check, Status.FAIL, text, fix)
    if free_bytes < DISK_WARN_BYTES or fraction < DISK_WARN_FRACTION:
        return Finding(check, Status.WARN, text, fix)
    return ok(check, text)


@dataclass(frozen=True)
class PathAccess:
    exists: bool
    is_dir: bool
    readable: bool
    writable: bool


def directory_access(
    check: str,
    path: str,
    access: PathAccess,
    *,
    why: str,
    parent: PathAccess | None = None,
) -> Finding:
    """A directory the engine must read and write (``why`` says what for). ``parent``: given for
    a directory the engine creates itself when it first writes there, so only its parent must be
    writable."""
    if not access.exists:
        if parent is not None and parent.exists and parent.writable:
            return Finding(
                check,
                Status.WARN,
                # Not "at start": the recordings store appears with the first recording, so
                # an engine that has run and recorded nothing yet still has none.
                f"{path} does not exist yet; the engine creates it when it first writes there",
                f"nothing, if the engine has not written there yet ({why})",
            )
        return Finding(check, Status.FAIL, f"{path} does not exist", f"create or mount it ({why})")
    if not access.is_dir:
        return Finding(check, Status.FAIL, f"{path} is not a directory", f"fix the path ({why})")
    lacking = [n for n, has in (("read", access.readable), ("write", access.writable)) if not has]
    if lacking:
        return Finding(
            check,
            Status.FAIL,
            f"{path}: the engine's user cannot {' or '.join(lacking)} it",
            f"{why}; e.g. put the engine's user in the directory's group and `chmod 2770` it",
        )
    return ok(check, f"{path} is readable and writable")


def readable_path(
    check: str,
    path: str,
    access: PathAccess,
    *,
    directory: bool,
    why: str,
    missing: Status = Status.FAIL,
) -> Finding:
    """A file (or, with ``directory``, a directory) the config names and the engine only reads:
    a key, a certificate, the IVR flows. ``missing``: how bad its absence is (WARN when the
    engine starts without it, FAIL when it refuses to)."""
    kind = "directory" if directory else "file"
    if not access.exists:
        return Finding(
            check, missing, f"{path} does not exist", f"fix the path or create it ({why})"
        )
    if access.is_dir != directory:
        return Finding(check, Status.FAIL, f"{path} is not a {kind}", f"fix the path ({why})")
    if not access.readable:
        return Finding(
            check,
            Status.FAIL,
            f"{path}: the engine's user cannot read it",
            f"{why}; give the engine's user read access",
        )
    return ok(check, f"{path} is a readable {kind}")


def migrations(check: str, pending: list[str], error: str | None) -> Finding:
    """``error``: the engine's own refusal (engine/store/pg/migrations.py ``plan``)."""
    if error is not None:
        return Finding(
            check, Status.FAIL, error, "the engine refuses to start on this database as it is"
        )
    if pending:
        return Finding(
            check,
            Status.WARN,
            f"{len(pending)} not applied yet ({', '.join(pending)})",
            "the engine applies them at its next start (under an advisory lock); nothing to do "
            "unless an engine is already running this version",
        )
    return ok(check, "every migration of this version is applied")


@dataclass(frozen=True)
class Holder:
    owner: str
    token: int


def campaign_leases(
    check: str, running: Iterable[str], holders: Mapping[str, Holder | None]
) -> list[Finding]:
    """One finding per running campaign: who runs it (its Redis lease), or nobody."""
    findings: list[Finding] = []
    for campaign in sorted(running):
        holder = holders.get(campaign)
        name = f"{check} {campaign}"
        if holder is None:
            findings.append(
                Finding(
                    name,
                    Status.WARN,
                    "running in PostgreSQL but no engine holds its lease: nobody dials it",
                    "start an engine on this database; if one runs, look in its log for "
                    "'campaign lease unavailable' (Redis)",
                )
            )
        else:
            findings.append(ok(name, f"held by {holder.owner} (fencing token {holder.token})"))
    if not findings:
        findings.append(ok(check, "no campaign is running"))
    return findings


def campaign_beside_queue(
    check: str,
    campaign_queues: Mapping[str, str],
    holders: Mapping[str, Holder | None],
    queue_holders: Mapping[str, Holder | None],
) -> list[Finding]:
    """With several engines, a running campaign's runner must sit on the engine that owns its
    queue: the runner paces on the agents its local ACD sees, and only the queue's owner keeps
    them current (elsewhere it sees no agent ready and dials nobody, without an error)."""
    findings: list[Finding] = []
    for campaign, queue in sorted(campaign_queues.items()):
        runner, owner = holders.get(campaign), queue_holders.get(queue)
        if runner is None or owner is None or runner.owner == owner.owner:
            continue
        findings.append(
            Finding(
                f"{check} {campaign}",
                Status.WARN,
                f"runs on {runner.owner} but its queue {queue} is owned by {owner.owner}: "
                "the runner sees no agent of the queue and dials nobody",
                f'place both together in [cluster] placement, e.g. "campaign:{campaign}" = '
                f'"queue:{queue}" (docs/production.md, "Several engines")',
            )
        )
    return findings


def owned_leases(
    check: str,
    names: Iterable[str],
    holders: Mapping[str, Holder | None],
    live: Iterable[str],
    preferred: Mapping[str, str | None],
) -> list[Finding]:
    """Several engines (``[cluster] enabled``): one finding for the live engines, then one per
    switch and queue lease: who holds it, whether that engine is live, and whether it is the
    one the spread policy prefers (docs/architecture.md "Several engines")."""
    alive = sorted(set(live))
    findings = [
        ok(f"{check}: engines", f"live: {', '.join(alive)}")
        if alive
        else Finding(
            f"{check}: engines",
            Status.WARN,
            "no engine's heartbeat is in Redis: none is running on this prefix",
            "start the engines; each needs its own [engine] instance",
        )
    ]
    for name in sorted(names):
        holder = holders.get(name)
        what = (
            "nobody originates on that switch"
            if name.startswith("switch:")
            else ("nobody admits callers to that queue")
        )
        if holder is None:
            findings.append(
                Finding(
                    f"{check} {name}",
                    Status.WARN if alive else Status.FAIL,
                    f"no engine holds it: {what}",
                    "if engines run, look in their logs for 'cannot take lease' (Redis); a "
                    "lease left free is taken within the lease TTL",
                )
            )
        elif holder.owner not in alive:
            findings.append(
                Finding(
                    f"{check} {name}",
                    Status.WARN,
                    f"held by {holder.owner} (fencing token {holder.token}), whose heartbeat "
                    "is gone: another engine takes it over when the lease expires",
                    "nothing to do if it persists no longer than the lease TTL; else check "
                    "that engine's Redis connection",
                )
            )
        else:
            want = preferred.get(name)
            note = "" if want in (None, holder.owner) else f"; {want} is preferred (hand-back due)"
            findings.append(
                ok(
                    f"{check} {name}",
                    f"held by {holder.owner} (fencing token {holder.token}){note}",
                )
            )
    return findings


def esl_auth(check: str, reply_text: str, *, acl_rejected: bool = False) -> Finding:
    """The ``Reply-Text`` FreeSWITCH sent to ``auth <password>``; ``acl_rejected``: it sent
    ``text/rude-rejection`` instead of ``auth/request`` (``apply-inbound-acl`` refused us)."""
    if acl_rejected:
        return Finding(
            check,
            Status.FAIL,
            "the event socket's ACL refused this host before the password was asked",
            "allow the engine's address in the list named by event_socket.conf.xml "
            "`apply-inbound-acl` (acl.conf.xml), then `reloadacl`",
        )
    if reply_text.startswith("+OK"):
        return ok(check, "event socket password accepted")
    return Finding(
        check,
        Status.FAIL,
        f"event socket refused the password ({reply_text or 'no reply'})",
        "set [[switches]] password to event_socket.conf.xml's `password`",
    )


def exit_status(findings: Iterable[Finding]) -> int:
    return 1 if any(f.status is Status.FAIL for f in findings) else 0


def dead_letters(check: str, directory: str, counts: Mapping[str, int]) -> Finding:
    """Records the outbox set aside (``<lane>.dead.jsonl``, docs/durability.md "Dead
    letters"): each is a record PostgreSQL refused, kept there until an operator fixes it
    and puts it back. WARN while any file holds a line; they are not lost, not delivered."""
    held = {lane: n for lane, n in sorted(counts.items()) if n}
    if not held:
        return ok(check, "no record set aside")
    listed = ", ".join(f"{lane} {n}" for lane, n in held.items())
    fix = (
        "read each line's error; put a fixed record back through <lane>.requeue.jsonl and "
        "remove its line (docs/durability.md 'Dead letters')"
    )
    if "recordings" in held:
        # A recording whose .key file was corrupt or unreadable: not indexed, not playable.
        fix += (
            "; a recordings line names a recording's .key file that was corrupt or unreadable:"
            " its .enc and .key are kept in the store (docs/recordings.md 'Durability')"
        )
    return Finding(
        check,
        Status.WARN,
        f"{sum(held.values())} record(s) refused and set aside in "
        f"{directory}/<lane>.dead.jsonl ({listed})",
        fix,
    )
