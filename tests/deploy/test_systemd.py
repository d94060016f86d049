"""deploy/systemd: the node units (one node, or one per port), partition maintenance and backups."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import SYSTEMD, read_unit, unit_command

NODE_UNITS = ("callbroker.service", "callbroker@.service")
JOB_UNITS = ("callbroker-partitions.service", "callbroker-backup.service")
TIMERS = ("callbroker-partitions.timer", "callbroker-backup.timer")
ENV_FILE = "/etc/callbroker/env"


def environment_assignments(service) -> dict[str, str]:
    """Environment= lines of a [Service] section (configparser keeps only the last one of a key)."""
    return dict(item.split("=", 1) for item in shlex.split(service.get("Environment", "")))


def all_environment_lines(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                name, _, value = item.partition("=")
                found[name] = value
    return found


def test_every_unit_file_parses():
    files = sorted(p.name for p in SYSTEMD.iterdir())
    assert set(files) == {*NODE_UNITS, *JOB_UNITS, *TIMERS}
    for name in files:
        assert read_unit(SYSTEMD / name).sections()


@pytest.mark.parametrize("name", NODE_UNITS)
def test_node_units_serve_with_the_env_file_and_restart_always(name):
    service = read_unit(SYSTEMD / name)["Service"]
    command = unit_command(service["ExecStart"])
    assert re.match(r"^/\S+/bin/callbroker serve\b", command), command
    assert "--host 127.0.0.1" in command
    assert service["EnvironmentFile"] == ENV_FILE
    assert service["Restart"] == "always"
    assert service["User"] not in {"root", "0"}


@pytest.mark.parametrize("name", NODE_UNITS)
def test_node_units_are_hardened_and_may_write_only_their_data_dir(name):
    unit = read_unit(SYSTEMD / name)
    service = unit["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    writable = service["ReadWritePaths"].split()
    data_dir = all_environment_lines(SYSTEMD / name)["CALLBROKER_DATA_DIR"]
    inside = [w for w in writable if data_dir == w or data_dir.startswith(w.rstrip("/") + "/")]
    assert inside, (data_dir, writable)
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_template_gives_each_port_its_own_node_and_data_dir():
    service = read_unit(SYSTEMD / "callbroker@.service")["Service"]
    assert "--port %i" in unit_command(service["ExecStart"])
    assert all_environment_lines(SYSTEMD / "callbroker@.service")["CALLBROKER_DATA_DIR"].endswith("/%i")


@pytest.mark.parametrize("name", JOB_UNITS)
def test_job_units_are_one_shot_with_the_env_file(name):
    service = read_unit(SYSTEMD / name)["Service"]
    assert service["Type"] == "oneshot"
    assert service["EnvironmentFile"] == ENV_FILE
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["User"] not in {"root", "0"}


def test_partition_maintenance_runs_the_command():
    service = read_unit(SYSTEMD / "callbroker-partitions.service")["Service"]
    assert re.match(r"^/\S+/bin/callbroker partitions ensure$", unit_command(service["ExecStart"]))


@pytest.mark.parametrize("name", TIMERS)
def test_timers_start_their_service_on_a_calendar(name):
    unit = read_unit(SYSTEMD / name)
    timer = unit["Timer"]
    assert timer["Unit"] == name.replace(".timer", ".service")
    assert (SYSTEMD / timer["Unit"]).exists()
    assert timer["OnCalendar"]
    assert timer["Persistent"] == "true"
    assert unit["Install"]["WantedBy"] == "timers.target"


def test_partitions_run_monthly():
    on_calendar = read_unit(SYSTEMD / "callbroker-partitions.timer")["Timer"]["OnCalendar"]
    assert on_calendar == "monthly" or re.fullmatch(r"\*-\*-\d{1,2} \d\d:\d\d(:\d\d)?", on_calendar)


# --------------------------------------------------------------------------- the backup job, executed


def backup_script() -> str:
    """The backup unit's shell script after systemd's own unescaping ($$ -> $, %% -> %)."""
    command = unit_command(read_unit(SYSTEMD / "callbroker-backup.service")["Service"]["ExecStart"])
    # Every $ and % must be escaped for systemd, or it expands them itself before the shell runs.
    assert "$" not in command.replace("$$", ""), "unescaped $ in ExecStart"
    assert "%" not in command.replace("%%", ""), "unescaped % in ExecStart"
    argv = shlex.split(command.replace("$$", "$").replace("%%", "%"))
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3, argv
    return argv[2]


def test_backup_uses_pg_dump_custom_format_with_retention():
    script = backup_script()
    assert "pg_dump --format=custom" in script
    assert "pg_restore --list" in script
    assert re.search(r'find "\$dir" .*-mtime "\+\$keep" -delete', script)
    env = all_environment_lines(SYSTEMD / "callbroker-backup.service")
    service = read_unit(SYSTEMD / "callbroker-backup.service")["Service"]
    assert env["CALLBROKER_BACKUP_DIR"] in service["ReadWritePaths"].split()
    assert int(env["CALLBROKER_BACKUP_KEEP_DAYS"]) > 0


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _run_backup(tmp_path: Path, pg_dump_body: str) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir, backups = tmp_path / "bin", tmp_path / "backups"
    bin_dir.mkdir()
    backups.mkdir()
    _stub(bin_dir, "pg_dump", pg_dump_body)
    _stub(bin_dir, "pg_restore", 'test "$1" = --list && test -s "$2"\n')
    day = 24 * 3600
    old_files = [("callbroker-20200101T000000Z.dump", 30 * day), ("callbroker-20200201T000000Z.dump", day),
                 ("callbroker-20200102T000000Z.dump.partial", 2 * day), ("other.dump", 30 * day)]
    for name, age in old_files:
        (backups / name).write_text("old")
        os.utime(backups / name, (time.time() - age, time.time() - age))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DATABASE_URL": "postgres://callbroker:pw@db:5432/callbroker",
           "CALLBROKER_BACKUP_DIR": str(backups), "CALLBROKER_BACKUP_KEEP_DAYS": "14"}
    result = subprocess.run(["/bin/sh", "-c", backup_script()], env=env, capture_output=True, text=True,
                            timeout=20)
    return result, backups


def test_backup_writes_a_checked_archive_and_applies_the_retention(tmp_path):
    dump = 'for a; do case "$a" in --file=*) f="${a#--file=}";; esac; done\nprintf PGDMP > "$f"\n'
    result, backups = _run_backup(tmp_path, dump)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in backups.iterdir())
    new = [n for n in names
           if re.fullmatch(r"callbroker-\d{8}T\d{6}Z\.dump", n) and not n.startswith("callbroker-2020")]
    assert len(new) == 1 and (backups / new[0]).read_text() == "PGDMP"
    assert "callbroker-20200201T000000Z.dump" in names, "a recent archive was deleted"
    assert "callbroker-20200101T000000Z.dump" not in names, "an archive past the retention was kept"
    assert not [n for n in names if n.endswith(".partial")]
    assert "other.dump" in names, "the retention deletes only callbroker's archives"
    assert f"backup written: {backups}/{new[0]}" in result.stdout


def test_a_failed_dump_fails_the_unit_and_leaves_no_archive(tmp_path):
    result, backups = _run_backup(tmp_path, "echo 'connection refused' >&2\nexit 1\n")
    assert result.returncode != 0
    fresh = [p.name for p in backups.glob("callbroker-*.dump") if not p.name.startswith("callbroker-2020")]
    assert fresh == []
    assert (backups / "callbroker-20200101T000000Z.dump").exists(), "nothing is pruned when the dump failed"
