"""Loading the network file: the packaged files load, loads are idempotent, export round-trips, prune."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal

import pytest
import yaml
from django.utils import timezone

from callbroker.calls.models import Call, CallAttempt
from callbroker.core import geo, schedule
from callbroker.network import models as m
from callbroker.network.loader import KINDS, dump_network, export_network, load_network, read_network_file
from callbroker.network.parsing import (
    NetworkError,
    format_duration,
    parse_area,
    parse_duration,
    parse_hours,
)

pytestmark = pytest.mark.django_db

EXAMPLE_FILE = m.Campaign._meta.app_config.path + "/demo/example-network.yaml"
DEMO_FILE = m.Campaign._meta.app_config.path + "/demo/demo-network.yaml"


def statuses(report, status: str) -> dict[str, int]:
    return {kind: report.counts[kind][status] for kind in KINDS}


def wipe_network() -> None:
    m.TrackingNumber.objects.all().delete()
    m.Target.objects.all().delete()
    for model in (m.Campaign, m.Buyer, m.Publisher):
        model.objects.all().delete()


# -- the packaged files ------------------------------------------------------------------------------------


def test_the_example_file_loads_with_every_option(load):
    report = load(EXAMPLE_FILE)

    assert statuses(report, "created") == {"campaigns": 3, "buyers": 2, "targets": 3, "publishers": 2,
                                           "tracking_numbers": 3}
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    assert campaign.payout == Decimal("15.00")
    assert campaign.duplicate_window == dt.timedelta(days=30)
    assert campaign.velocity_window == dt.timedelta(minutes=10)
    assert campaign.missed_calls_cooldown == dt.timedelta(minutes=30)
    assert (campaign.fallback_kind, campaign.fallback_number) == ("forward", "+15125550100")
    assert campaign.ask_zip == "when_missing"
    assert campaign.whisper_text == "Plumbing call from callbroker"
    defaults = m.Campaign.objects.get(key="austin-roofing")
    assert (defaults.buffer_seconds, defaults.ring_timeout, defaults.fallback_kind) == (60, 30, "message")
    target = m.Target.objects.get(key="acme-austin-main")
    assert target.min_talk_seconds == 90
    caps = (target.hourly_cap, target.daily_cap, target.monthly_cap, target.concurrency_limit)
    assert caps == (5, 20, 300, 2)
    assert target.area["counties"] == ["Travis County, TX", "TX:Williamson", "48209"]
    assert "states" not in target.area  # canonical: empty parts are left out
    assert target.hours["exceptions"] == [{"date": "2026-12-24", "hours": "08:00-12:00"},
                                          {"date": "2026-12-31", "closed": True}]
    assert m.TargetState.objects.count() == m.Target.objects.count() == 3


def test_the_demo_network_loads_and_is_realistic(load):
    load(DEMO_FILE)

    assert m.Campaign.objects.count() >= 3
    assert m.Buyer.objects.count() >= 8
    assert m.Publisher.objects.count() == 4
    assert m.TrackingNumber.objects.count() >= 20
    kinds = {c.fallback_kind for c in m.Campaign.objects.all()}
    assert kinds == {"message", "forward", "voicemail", "callback"}
    assert {c.ask_zip for c in m.Campaign.objects.all()} >= {"always", "when_missing"}
    assert sum(1 for c in m.Campaign.objects.all() if c.confirm_category) >= 2
    zones = {b.timezone for b in m.Buyer.objects.all()}
    assert zones >= {"America/Chicago", "America/Phoenix", "America/Denver", "America/New_York"}
    for campaign in m.Campaign.objects.all():
        targets = list(campaign.targets.all())
        assert any(t.hours is None for t in targets), f"{campaign.key} has no 24/7 target"
        assert all(Decimal("25") <= t.price <= Decimal("95") for t in targets)
        assert all(campaign.payout < t.price for t in targets)


def test_loading_twice_changes_nothing(load):
    load(DEMO_FILE)
    version = m.NetworkVersion.objects.get(pk=1).version

    report = load(DEMO_FILE)

    assert not report.changed
    assert statuses(report, "created") == dict.fromkeys(KINDS, 0)
    assert statuses(report, "updated") == dict.fromkeys(KINDS, 0)
    assert m.NetworkVersion.objects.get(pk=1).version == version


def test_a_changed_value_updates_only_that_row(network, load):
    load(network)
    network["buyers"][0]["targets"][0]["price"] = "50.00"

    report = load(network)

    assert report.counts["targets"] == {"created": 0, "updated": 1, "unchanged": 2, "pruned": 0}
    assert m.Target.objects.get(key="acme-main").price == Decimal("50.00")


# -- export ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [EXAMPLE_FILE, DEMO_FILE], ids=["example", "demo"])
def test_export_then_load_gives_the_same_export(source, load, tmp_path):
    load(source)
    first = export_network()
    path = tmp_path / "export.yaml"
    path.write_text(dump_network(first))
    wipe_network()

    report = load(path)

    assert statuses(report, "created") == {
        "campaigns": len(first["campaigns"]), "buyers": len(first["buyers"]),
        "targets": sum(len(b["targets"]) for b in first["buyers"]), "publishers": len(first["publishers"]),
        "tracking_numbers": len(first["tracking_numbers"]),
    }
    assert export_network() == first
    assert read_network_file(path) == yaml.safe_load(path.read_text())  # plain YAML, nothing exotic


def test_a_text_written_unquoted_as_a_yaml_number_is_taken_as_written(load, tmp_path):
    """YAML 1.1 reads an unquoted 0123 as 83 (octal), 12:30 as 750 (base 60), 1_000 as 1000 and .5 as 0.5:
    a label or a name written so was stored as the number's digits, without a word."""
    path = tmp_path / "network.yaml"
    path.write_text("""version: 1
campaigns:
  - {key: night, name: 2024, category: 12:30, whisper: 1_000, disclosure_text: .5,
     ivr: {confirm_category: 0x1F}}
publishers:
  - {key: agent, name: 007}
tracking_numbers:
  - {number: "+15125550101", campaign: night, publisher: agent, label: 0123}
""")
    load(path)

    campaign = m.Campaign.objects.get(key="night")
    assert (campaign.name, campaign.category, campaign.whisper_text, campaign.disclosure_text,
            campaign.confirm_category) == ("2024", "12:30", "1_000", ".5", "0x1F")
    assert m.Publisher.objects.get(key="agent").name == "007"
    assert m.TrackingNumber.objects.get().label == "0123"
    exported = tmp_path / "export.yaml"
    exported.write_text(dump_network(export_network()))
    again = load(exported)  # the export loads back to the same network
    assert statuses(again, "created") == statuses(again, "updated") == dict.fromkeys(KINDS, 0)


def test_export_writes_money_as_strings_and_durations_in_units(load):
    load(EXAMPLE_FILE)
    data = export_network()
    campaign = next(c for c in data["campaigns"] if c["key"] == "austin-plumbing")
    assert campaign["payout"] == "15.00"
    assert campaign["duplicate_window"] == "30d"
    assert campaign["missed_call_protection"] == {"misses": 3, "window": "1h", "cooldown": "30m"}
    hvac = next(c for c in data["campaigns"] if c["key"] == "austin-hvac")
    assert hvac["duplicate_window"] == "2w"
    assert hvac["payout"] == "12.00"


@pytest.mark.parametrize("character", ["\x85", "\u2028", "\u2029"])
def test_an_exported_yaml_line_break_reads_back_as_itself_and_is_refused(network, load, problems, tmp_path,
                                                                         character):
    """Stored around the loader (before it refused them), a YAML-only line break was exported raw inside
    single quotes and read back as a space: export -> load changed the network without a word."""
    load(network)
    m.Campaign.objects.filter(key="austin-plumbing").update(name=f"Austin{character}Plumbing")
    path = tmp_path / "export.yaml"
    path.write_text(dump_network(export_network()), encoding="utf-8")

    assert read_network_file(path)["campaigns"][0]["name"] == f"Austin{character}Plumbing"
    [problem] = problems(path)
    assert problem.startswith(f"campaigns[0].name: holds the control character U+{ord(character):04X} (")


# -- prune -----------------------------------------------------------------------------------------------


def test_prune_removes_what_the_file_no_longer_mentions(network, load):
    bigger = copy.deepcopy(network)
    bigger["campaigns"].append({"key": "old-campaign"})
    bigger["buyers"].append({"key": "old-buyer", "targets": [
        {"key": "old-unused", "campaign": "old-campaign", "number": "+15125550170"},
        {"key": "old-with-calls", "campaign": "old-campaign", "number": "+15125550171"},
    ]})
    bigger["publishers"].append({"key": "old-publisher"})
    bigger["tracking_numbers"].append(
        {"number": "+15125550109", "campaign": "old-campaign", "publisher": "old-publisher"})
    load(bigger)
    with_calls = m.Target.objects.get(key="old-with-calls")
    now = timezone.now()
    call = Call.objects.create(call_sid="CA1", to_number="+15125550109", started_at=now,
                               connected_target=with_calls, buyer=with_calls.buyer,
                               campaign=with_calls.campaign)
    CallAttempt.objects.create(call=call, sequence=0, target=with_calls, number=with_calls.number,
                               started_at=now)

    without_prune = load(network)
    assert statuses(without_prune, "pruned") == dict.fromkeys(KINDS, 0)
    report = load(network, prune=True)

    assert statuses(report, "pruned") == {"campaigns": 1, "buyers": 1, "targets": 2, "publishers": 1,
                                          "tracking_numbers": 1}
    assert not m.Target.objects.filter(key="old-unused").exists()
    with_calls.refresh_from_db()
    assert with_calls.paused
    assert Call.objects.get(call_sid="CA1").connected_target == with_calls
    assert not m.Campaign.objects.get(key="old-campaign").active
    assert not m.Buyer.objects.get(key="old-buyer").active
    assert not m.Publisher.objects.get(key="old-publisher").active
    assert not m.TrackingNumber.objects.get(number="+15125550109").active
    assert m.Campaign.objects.get(key="austin-plumbing").active
    assert "old-with-calls" in "\n".join(report.notes)

    again = load(network, prune=True)
    assert not again.changed


# -- parsing helpers (the API the routing snapshot uses) --------------------------------------------------


def test_parse_area_and_hours_build_core_values(zip_directory):
    area = parse_area({"zips": ["78701"], "radius": [{"zip": "78701", "miles": 3}],
                       "exclude_zips": ["78702"]})
    assert isinstance(area, geo.ServiceArea)
    zips = area.resolve(zip_directory)
    assert "78701" in zips and "78702" not in zips
    assert parse_area(None).resolve(zip_directory) is None
    assert parse_area({}).is_everywhere()
    with pytest.raises(NetworkError):
        parse_area({"zips": "78701"})

    hours = parse_hours({"weekly": {"weekdays": "08:00-18:00"}, "holidays": "US",
                         "exceptions": [{"date": "2026-12-24", "hours": "08:00-12:00"}]}, "America/Chicago")
    assert isinstance(hours, schedule.Schedule)
    assert hours.timezone == "America/Chicago"
    assert hours.is_open(dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC))  # 09:00 CST
    assert not hours.is_open(dt.datetime(2026, 12, 24, 19, 0, tzinfo=dt.UTC))  # 13:00 CST, exception
    assert not hours.is_open(dt.datetime(2026, 12, 25, 15, 0, tzinfo=dt.UTC))  # Christmas
    assert parse_hours(None, "America/Chicago") is None
    assert parse_hours({"timezone": "America/Phoenix", "weekly": {"daily": "24h"}}, "UTC").timezone == \
        "America/Phoenix"


@pytest.mark.parametrize(("text", "seconds", "canonical"), [
    ("30d", 30 * 86400, "30d"), ("2w", 14 * 86400, "2w"), ("1h", 3600, "1h"), ("90m", 5400, "90m"),
    ("45s", 45, "45s"), (90, 90, "90s"), ("1h30m", 5400, "90m"), ("0", 0, "0s"), ("14d", 14 * 86400, "2w"),
])
def test_durations(text, seconds, canonical):
    value = parse_duration(text)
    assert value == dt.timedelta(seconds=seconds)
    assert format_duration(value) == canonical
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("bad", ["1.5h", "3x", "-5", -5, True, "", "1h1h", None, dt.timedelta(seconds=1.5),
                                 dt.timedelta(days=-1), dt.timedelta(days=3651)])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- version: 1\n")
    with pytest.raises(NetworkError, match="the file must be a mapping"):
        load_network(path)



def test_a_network_with_more_rows_than_a_statement_takes_values_loads_and_prunes(network, load,
                                                                                 few_sql_variables):
    target = network["buyers"][1]["targets"][0]
    network["buyers"][1]["targets"] = [dict(target, key=f"bolt-{i}", number=f"+1512555{2000 + i:04d}")
                                       for i in range(130)]
    network["tracking_numbers"] = [{"number": f"+1512555{3000 + i:04d}", "campaign": "austin-plumbing",
                                    "publisher": "metro-search"} for i in range(130)]
    load(network)
    assert m.TargetState.objects.count() == m.Target.objects.count() == 132
    with_calls = m.Target.objects.get(key="bolt-7")
    call = Call.objects.create(call_sid="CA1", to_number="+15125553000", started_at=timezone.now(),
                               connected_target=with_calls, buyer=with_calls.buyer, campaign=with_calls.campaign)
    CallAttempt.objects.create(call=call, sequence=0, target=with_calls, number=with_calls.number,
                               started_at=timezone.now())

    network["buyers"][1]["targets"] = network["buyers"][1]["targets"][20:]
    network["tracking_numbers"] = network["tracking_numbers"][20:]
    report = load(network, prune=True)

    assert report.counts["targets"]["pruned"] == 20
    assert report.counts["tracking_numbers"]["pruned"] == 20
    assert m.Target.objects.count() == 113  # 112 kept and bolt-7, paused: a call rang it
    assert m.Target.objects.get(key="bolt-7").paused
    assert m.TrackingNumber.objects.filter(active=True).count() == 110
    assert not load(network, prune=True).changed
    exported = export_network()
    assert len(exported["tracking_numbers"]) == 130 and sum(len(b["targets"]) for b in exported["buyers"]) == 113


def test_a_negative_amount_written_around_the_loader_and_the_admin_is_left_out_of_routing(network, load, caplog):
    """Raw SQL can still write one: the target is not routed to, the campaign's callers get its fallback,
    rather than calls that can never be billed (qualification refuses negative money)."""
    from callbroker.network.snapshot import build_snapshot

    load(network)
    m.Target.objects.filter(key="acme-main").update(price=Decimal("-45.00"))
    m.Campaign.objects.filter(key="austin-plumbing").update(payout=Decimal("-1.00"))
    snap = build_snapshot()
    campaign = m.Campaign.objects.get(key="austin-plumbing")
    assert m.Target.objects.get(key="acme-main").pk not in snap.targets
    assert m.Target.objects.get(key="bolt-main").pk in snap.targets
    assert not snap.campaigns[campaign.pk].active
    assert "negative payout" in caplog.text


def test_a_tracking_number_on_top_of_a_number_dialled_already_is_refused(network, load, problems):
    """A target or a forward fallback already in the database (not in the file) dials a number the file
    makes a tracking number: calls would ring back into the platform, and the export wouldn't load."""
    network["campaigns"][0]["fallback"] = {"kind": "forward", "number": "+15125550222"}
    load(network)
    later = {"version": 1, "publishers": [{"key": "p2", "name": "P2"}], "tracking_numbers": [
        {"number": "+15125550150", "campaign": "austin-plumbing", "publisher": "p2"},  # acme-main's number
        {"number": "+15125550222", "campaign": "austin-plumbing", "publisher": "p2"},  # the fallback's
        {"number": "+15125550199", "campaign": "austin-plumbing", "publisher": "p2"},  # dialled by no one
    ]}
    assert problems(later) == [
        "tracking_numbers[0].number: +15125550150 is the number of target 'acme-main', already in the database; "
        "calls would ring back into the platform",
        "tracking_numbers[1].number: +15125550222 is the fallback number of campaign 'austin-plumbing', already "
        "in the database; calls would ring back into the platform",
    ]
    later["tracking_numbers"] = later["tracking_numbers"][2:]
    assert load(later).counts["tracking_numbers"]["created"] == 1


def ring(target: m.Target, sid: str) -> None:
    """A call that rang ``target``: pruning then pauses it instead of deleting it."""
    call = Call.objects.create(call_sid=sid, to_number="+15125550101", started_at=timezone.now(),
                               buyer=target.buyer, campaign=target.campaign)
    CallAttempt.objects.create(call=call, sequence=0, target=target, number=target.number,
                               started_at=timezone.now())


def test_a_paused_targets_number_cannot_become_a_tracking_number(network, load, problems, tmp_path):
    """--prune paused a target that calls rang; its number given to a tracking number loaded, and then the
    export didn't load back ("is a tracking number")."""
    load(network)
    ring(m.Target.objects.get(key="acme-main"), "CA1")
    smaller = copy.deepcopy(network)
    del smaller["buyers"][0]["targets"][0]
    load(smaller, prune=True)
    assert m.Target.objects.get(key="acme-main").paused

    reuse = copy.deepcopy(smaller)
    reuse["tracking_numbers"].append(
        {"number": "+15125550150", "campaign": "austin-plumbing", "publisher": "metro-search"})
    assert problems(reuse) == [
        "tracking_numbers[1].number: +15125550150 is the number of target 'acme-main', already in the "
        "database (paused, but it keeps its number and can be unpaused); calls would ring back into the "
        "platform"]
    assert problems(reuse, prune=True) == [
        "tracking_numbers[1].number: +15125550150 is the number of target 'acme-main', already in the "
        "database (--prune pauses it but keeps it: calls refer to it); calls would ring back into the "
        "platform"]

    path = tmp_path / "export.yaml"  # what is in the database still exports and loads back
    path.write_text(dump_network(export_network()))
    assert not load(path).changed


def test_pruning_frees_the_number_of_a_target_it_deletes(network, load):
    load(network)
    smaller = copy.deepcopy(network)
    del smaller["buyers"][0]["targets"][0]  # acme-main: no call rang it, so --prune deletes it
    smaller["tracking_numbers"].append(
        {"number": "+15125550150", "campaign": "austin-plumbing", "publisher": "metro-search"})

    report = load(smaller, prune=True)

    assert report.counts["tracking_numbers"]["created"] == 1
    assert not m.Target.objects.filter(key="acme-main").exists()


@pytest.mark.parametrize(("kind", "active"), [("voicemail", True), ("forward", False), ("message", True)])
def test_any_stored_fallback_number_is_refused_as_a_tracking_number(network, load, problems, kind, active):
    """The file refuses a fallback of any kind whose number is a tracking number; the database side now
    looks at the same fallbacks (it looked at active forward ones only)."""
    network["campaigns"][0].update(active=active, fallback={"kind": kind, "number": "+15125550222"})
    load(network)
    later = {"version": 1, "tracking_numbers": [
        {"number": "+15125550222", "campaign": "austin-plumbing", "publisher": "metro-search"}]}
    assert problems(later) == [
        "tracking_numbers[0].number: +15125550222 is the fallback number of campaign 'austin-plumbing', "
        "already in the database; calls would ring back into the platform"]
