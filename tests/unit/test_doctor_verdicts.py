"""The doctor's verdicts (engine/doctor/verdicts.py): what each measurement means."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.doctor.verdicts import (
    AMI_ACTIONS,
    CLOCK_FAIL_S,
    CLOCK_WARN_S,
    Finding,
    Holder,
    PathAccess,
    Status,
    ami_event_filters,
    ami_permissions,
    campaign_beside_queue,
    campaign_leases,
    clock_skew,
    directory_access,
    disk_space,
    esl_auth,
    exit_status,
    migrations,
    owned_leases,
)
from engine.pbx.asterisk.ami_codec import AmiParser, Response

ROOT = Path(__file__).resolve().parents[2]
TRANSCRIPTS = ROOT / "tests" / "fixtures" / "asterisk-22" / "transcripts"
ESL = ROOT / "tests" / "fixtures" / "freeswitch-1.10" / "transcripts"
GiB = 1 << 30


def _recorded_list_commands() -> list[str]:
    """The action names of the real ListCommands reply (user `engine`, read/write = all)."""
    data = (TRANSCRIPTS / "doctor.ami").read_bytes()
    parser = AmiParser()
    replies = [m for m in parser.feed(data[data.index(b"\r\n") + 2 :]) if isinstance(m, Response)]
    (reply,) = [r for r in replies if r.action_id == "lc-1"]
    return [name for name, _ in reply.headers if name not in ("Response", "ActionID")]


def test_the_recorded_user_with_write_all_may_send_every_action_the_engine_uses() -> None:
    listed = _recorded_list_commands()
    assert len(listed) > 100
    assert ami_permissions("perm", listed).status is Status.OK


def test_a_user_without_originate_fails_naming_what_is_missing() -> None:
    listed = [a for a in _recorded_list_commands() if a not in ("Originate", "MixMonitor")]
    finding = ami_permissions("perm", listed)
    assert finding.status is Status.FAIL
    assert "Originate, MixMonitor" in finding.message and "manager.conf" in finding.fix


def test_refused_event_filters_are_a_warning_with_the_manager_conf_fix() -> None:
    assert ami_event_filters("f", True, 20).status is Status.OK
    refused = ami_event_filters("f", False, 20)
    assert refused.status is Status.WARN and "eventfilter" in refused.fix


@pytest.mark.parametrize(
    ("offset", "uncertainty", "status"),
    [
        (0.0, 0.0, Status.OK),
        (CLOCK_WARN_S - 0.01, 0.0, Status.OK),
        (CLOCK_WARN_S + 0.01, 0.0, Status.WARN),
        (-(CLOCK_FAIL_S + 0.01), 0.0, Status.FAIL),
        # A slow round trip cannot prove a skew: the uncertainty is taken off first.
        (CLOCK_WARN_S + 0.2, 0.3, Status.OK),
    ],
)
def test_clock_skew_thresholds(offset: float, uncertainty: float, status: Status) -> None:
    finding = clock_skew("clock", offset, uncertainty)
    assert finding.status is status
    assert ("behind" in finding.message) == (offset < 0)


@pytest.mark.parametrize(
    ("free", "total", "status"),
    [
        (50 * GiB, 100 * GiB, Status.OK),
        (4 * GiB, 10 * GiB, Status.WARN),  # 40% free but under 5 GiB
        (8 * GiB, 100 * GiB, Status.WARN),  # 8 GiB but under 10%
        (GiB // 2, 2 * GiB, Status.FAIL),  # under 1 GiB
        (20 * GiB, 1000 * GiB, Status.FAIL),  # 2%
    ],
)
def test_outbox_disk_space(free: int, total: int, status: Status) -> None:
    assert disk_space("disk", "/var/lib/x", free, total).status is status


def test_directory_access() -> None:
    rw = PathAccess(exists=True, is_dir=True, readable=True, writable=True)
    assert directory_access("d", "/x", rw, why="w").status is Status.OK
    read_only = PathAccess(exists=True, is_dir=True, readable=True, writable=False)
    finding = directory_access("d", "/x", read_only, why="w")
    assert finding.status is Status.FAIL and "cannot write" in finding.message
    missing = PathAccess(exists=False, is_dir=False, readable=False, writable=False)
    assert directory_access("d", "/x", missing, why="w").status is Status.FAIL
    # A directory the engine makes itself: fine while its parent is writable.
    finding = directory_access("d", "/x", missing, why="w", parent=rw)
    assert finding.status is Status.WARN
    # The recordings store is made with the first recording, not at start: a doctor run after
    # the engine ran with no recording must not say otherwise.
    assert "creates it when it first writes there" in finding.message
    assert directory_access("d", "/x", missing, why="w", parent=read_only).status is Status.FAIL
    a_file = PathAccess(exists=True, is_dir=False, readable=True, writable=True)
    assert directory_access("d", "/x", a_file, why="w").status is Status.FAIL


def test_migrations() -> None:
    assert migrations("m", [], None).status is Status.OK
    assert migrations("m", ["0011_x.sql"], None).status is Status.WARN
    changed = migrations("m", [], "migration 0003_campaigns.sql was changed after it was applied")
    assert changed.status is Status.FAIL and "0003_campaigns.sql" in changed.message


def test_campaign_leases_name_the_holder_or_say_nobody_runs_it() -> None:
    findings = campaign_leases(
        "lease", ["spring", "autumn"], {"spring": Holder("engine-1", 42), "autumn": None}
    )
    by_check = {f.check: f for f in findings}
    assert by_check["lease spring"].status is Status.OK
    assert "engine-1" in by_check["lease spring"].message
    assert "42" in by_check["lease spring"].message
    assert by_check["lease autumn"].status is Status.WARN
    assert [f.status for f in campaign_leases("lease", [], {})] == [Status.OK]


def test_a_campaign_away_from_its_queue_is_named() -> None:
    # Found by the takeover drill: a runner on the engine that does not own its queue saw no
    # agent ready and dialled nobody for 30 s, with nothing logged.
    holders = {"spring": Holder("e1", 4), "autumn": Holder("e2", 9), "idle": None}
    queues = {"sales": Holder("e1", 2), "care": Holder("e1", 3)}
    findings = campaign_beside_queue(
        "lease", {"spring": "sales", "autumn": "care", "idle": "care"}, holders, queues
    )
    assert [(f.check, f.status) for f in findings] == [("lease autumn", Status.WARN)]
    assert "e2" in findings[0].message and "care" in findings[0].message
    assert '"campaign:autumn" = "queue:care"' in findings[0].fix
    assert campaign_beside_queue("lease", {"spring": "sales"}, holders, queues) == []


def test_owned_leases_say_who_holds_each_and_whether_it_is_live() -> None:
    names = ["switch:pbx1", "queue:sales", "queue:support", "queue:billing"]
    holders = {
        "switch:pbx1": Holder("e1", 7),
        "queue:sales": Holder("e1", 3),
        "queue:support": Holder("e-dead", 4),
        "queue:billing": None,
    }
    preferred = {"switch:pbx1": "e1", "queue:sales": "e2"}
    by = {f.check: f for f in owned_leases("leases", names, holders, ["e1", "e2"], preferred)}
    assert by["leases: engines"].status is Status.OK and "e1, e2" in by["leases: engines"].message
    assert by["leases switch:pbx1"].status is Status.OK
    assert "e1 (fencing token 7)" in by["leases switch:pbx1"].message
    assert "e2 is preferred" in by["leases queue:sales"].message
    assert by["leases queue:support"].status is Status.WARN
    assert "heartbeat is gone" in by["leases queue:support"].message
    assert by["leases queue:billing"].status is Status.WARN
    assert "nobody admits callers" in by["leases queue:billing"].message
    nobody = {f.check: f for f in owned_leases("leases", names[:1], {}, [], {})}
    assert nobody["leases: engines"].status is Status.WARN
    assert nobody["leases switch:pbx1"].status is Status.FAIL


def test_esl_auth_replies_as_recorded() -> None:
    # The Reply-Text lines FreeSWITCH 1.10 sent to a right and a wrong password.
    accepted = (ESL / "api-misc.esl").read_text().split("Reply-Text: ", 1)[1].splitlines()[0]
    refused = (ESL / "auth-wrong-password.esl").read_text()
    refused = refused.split("Reply-Text: ", 1)[1].splitlines()[0]
    assert esl_auth("esl", accepted).status is Status.OK
    finding = esl_auth("esl", refused)
    assert finding.status is Status.FAIL and "-ERR invalid" in finding.message


def test_lines_and_exit_status() -> None:
    good = Finding("a", Status.OK, "fine", "never shown")
    bad = Finding("b", Status.FAIL, "broken", "do this")
    assert good.line() == "OK    a: fine"
    assert bad.line() == "FAIL  b: broken | fix: do this"
    assert exit_status([good, Finding("c", Status.WARN, "meh"), Finding("d", Status.SKIP, "")]) == 0
    assert exit_status([good, bad]) == 1
    assert len(set(AMI_ACTIONS)) == len(AMI_ACTIONS)


def test_doctor_command_on_a_bad_config_fails_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    bad = tmp_path / "engine.toml"
    bad.write_text('[api]\nbind = "127.0.0.1:99999"\n')
    assert main(["doctor", "--config", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  config: ") and "api.bind" in out, out
