"""``callbroker network load/export`` and ``callbroker demo``."""

from __future__ import annotations

import io

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import get_script_prefix, set_script_prefix

from callbroker.network import models as m

pytestmark = pytest.mark.django_db

DEMO_DIR = m.Campaign._meta.app_config.path + "/demo"

#: One of each kind but targets.
ONE_CAMPAIGN = """\
version: 1
campaigns:
  - {key: c, name: C, category: plumbing, payout: "15.00", fallback: {kind: message, message: Sorry.}}
buyers:
  - key: b
    name: B
    timezone: America/Chicago
    targets:
      - {key: t, campaign: c, number: "+15125550150", price: "45.00"}
      - {key: u, campaign: c, number: "+15125550151", price: "45.00"}
publishers:
  - {key: p, name: P}
tracking_numbers:
  - {number: "+15125550101", campaign: c, publisher: p}
"""


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_network_load_prints_the_report():
    out, _ = run("network", "load", f"{DEMO_DIR}/example-network.yaml")
    assert "campaigns         created   3  updated   0  unchanged   0  pruned   0" in out
    assert m.Target.objects.count() == 3

    out, _ = run("network", "load", f"{DEMO_DIR}/example-network.yaml")
    assert out.rstrip().endswith("Nothing changed.")


def test_network_load_lists_every_problem_and_exits_1(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\n"
        "campaigns:\n"
        "  - {key: c, fallback: {kind: forward}}\n"
        "buyers:\n"
        "  - key: b\n"
        "    targets:\n"
        "      - {key: t, campaign: c, number: '+15125550150', prioriy: 1}\n"
    )
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("network", "load", str(path), stdout=io.StringIO(), stderr=err)

    assert exit_info.value.code == 1
    assert err.getvalue().splitlines() == [
        "campaigns[0].fallback.number: missing: a forward fallback needs the number to forward to",
        "buyers[0].targets[0].prioriy: unknown key 'prioriy' (did you mean 'priority'?)",
        "2 problems; nothing was written.",
    ]
    assert not m.Campaign.objects.exists()


def test_network_load_check_writes_nothing():
    out, _ = run("network", "load", f"{DEMO_DIR}/demo-network.yaml", "--check")
    assert "is valid" in out and "nothing was written" in out
    assert not m.Campaign.objects.exists()


def test_counts_of_one_are_singular(tmp_path):
    """Formerly ``checked: 1 campaigns, … 1 publishers`` (and ``Wrote …: 1 campaigns`` from export)."""
    path = tmp_path / "one.yaml"
    path.write_text(ONE_CAMPAIGN)
    out, _ = run("network", "load", str(path), "--check")
    assert "(checked: 1 campaign, 1 buyer, 2 targets, 1 publisher, 1 tracking number)" in out, out
    run("network", "load", str(path))
    out, _ = run("network", "export", "-o", str(tmp_path / "out.yaml"))
    assert out.strip().endswith(": 1 campaign, 1 buyer, 2 targets, 1 publisher, 1 tracking number"), out


def test_network_export_to_stdout_and_file(tmp_path):
    run("network", "load", f"{DEMO_DIR}/example-network.yaml")
    out, _ = run("network", "export")
    data = yaml.safe_load(out)
    assert data["version"] == 1
    assert [c["key"] for c in data["campaigns"]] == ["austin-hvac", "austin-plumbing", "austin-roofing"]

    path = tmp_path / "network.yaml"
    message, _ = run("network", "export", "-o", str(path))
    assert "3 campaigns, 2 buyers, 3 targets, 2 publishers, 3 tracking numbers" in message
    assert path.read_text() == out
    out, _ = run("network", "load", str(path), "--prune")
    assert "Nothing changed." in out
    with pytest.raises(CommandError, match="Cannot write .*/missing/network.yaml: No such file or directory"):
        run("network", "export", "-o", str(tmp_path / "missing" / "network.yaml"))


def test_an_empty_file_name_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an empty path would have been read, or an export written
    with pytest.raises(CommandError) as load:
        run("network", "load", "")
    assert str(load.value) == "FILE: give the network file's path (it is empty)."
    with pytest.raises(CommandError) as export:
        run("network", "export", "-o", " ")
    assert str(export.value) == ("-o/--output: give the file to write (it is empty); leave the option out to "
                                 "write to standard output.")
    assert list(tmp_path.iterdir()) == []


def test_demo_is_idempotent_and_creates_the_admin(monkeypatch):
    monkeypatch.delenv("CALLBROKER_ADMIN_PASSWORD", raising=False)
    first, _ = run("demo")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("callbroker")
    assert "admin / callbroker" in first
    assert "+15125550101" in first  # the tracking numbers to call
    counts = (m.Campaign.objects.count(), m.Target.objects.count(), m.TrackingNumber.objects.count())
    version = m.NetworkVersion.objects.get(pk=1).version

    second, _ = run("demo")

    assert "already loaded, nothing changed" in second
    assert "password was not changed" in second
    assert (m.Campaign.objects.count(), m.Target.objects.count(), m.TrackingNumber.objects.count()) == counts
    assert m.NetworkVersion.objects.get(pk=1).version == version


def test_demo_names_the_admin_under_the_path_of_the_public_url(monkeypatch):
    """With a path in CALLBROKER_PUBLIC_URL (``https://host/cb``, Django's FORCE_SCRIPT_NAME, which every command
    takes as its script prefix) the admin is /cb/admin/; the line said /admin/, outside callbroker on the proxy."""
    monkeypatch.delenv("CALLBROKER_ADMIN_PASSWORD", raising=False)
    before = get_script_prefix()
    set_script_prefix("/cb")  # what django.setup() does with FORCE_SCRIPT_NAME = "/cb"
    try:
        out, _ = run("demo")
    finally:
        set_script_prefix(before)
    assert "(sign in at /cb/admin/)" in out


def test_demo_takes_the_admin_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("CALLBROKER_ADMIN_PASSWORD", "s3cret-demo")
    out, _ = run("demo")
    assert get_user_model().objects.get(username="admin").check_password("s3cret-demo")
    assert "s3cret-demo" not in out


def test_the_admin_password_from_the_environment_applies_to_an_existing_admin(monkeypatch):
    """Set on a later run (the admin exists already), the variable sets the password; unset, nothing changes."""
    monkeypatch.delenv("CALLBROKER_ADMIN_PASSWORD", raising=False)
    run("demo")
    monkeypatch.setenv("CALLBROKER_ADMIN_PASSWORD", "later-s3cret")

    out, _ = run("demo")

    assert get_user_model().objects.get(username="admin").check_password("later-s3cret")
    assert "password set to the value of CALLBROKER_ADMIN_PASSWORD" in out and "later-s3cret" not in out
    again, _ = run("demo")
    assert "password was not changed" in again
    monkeypatch.delenv("CALLBROKER_ADMIN_PASSWORD")
    run("demo")
    assert get_user_model().objects.get(username="admin").check_password("later-s3cret")


@pytest.mark.parametrize("password", [None, "callbroker"])
def test_demo_in_production_never_creates_the_admin_with_the_public_password(monkeypatch, settings, password):
    """It created ``admin`` / ``callbroker`` on a production database, the admin public behind the proxy."""
    settings.PRODUCTION = True
    monkeypatch.delenv("CALLBROKER_ADMIN_PASSWORD", raising=False)
    if password is not None:
        monkeypatch.setenv("CALLBROKER_ADMIN_PASSWORD", password)

    with pytest.raises(CommandError, match="CALLBROKER_ADMIN_PASSWORD.*The demo network was not loaded"):
        run("demo")

    assert not get_user_model().objects.filter(username="admin").exists()
    assert not m.Campaign.objects.exists()  # all or nothing: the network not loaded either
    monkeypatch.setenv("CALLBROKER_ADMIN_PASSWORD", "an-0wn-s3cret")
    run("demo")
    assert get_user_model().objects.get(username="admin").check_password("an-0wn-s3cret")


def test_network_export_reports_a_stored_value_a_file_cannot_hold(tmp_path):
    """A duration with a fraction of a second, saved by the admin before it refused one, ended the export in a
    traceback."""
    import datetime as dt

    run("network", "load", f"{DEMO_DIR}/example-network.yaml")
    m.Campaign.objects.filter(key="austin-roofing").update(duplicate_window=dt.timedelta(seconds=1.5))
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("network", "export", "-o", str(tmp_path / "out.yaml"), stdout=io.StringIO(), stderr=err)

    assert exit_info.value.code == 1
    assert err.getvalue().splitlines() == [
        "campaign 'austin-roofing': duplicate_window is 0:00:01.500000, not a whole number of seconds, "
        "which a network file can't hold: change it in the admin",
        "1 value a network file can't hold; nothing was exported.",
    ]
    assert not (tmp_path / "out.yaml").exists()
