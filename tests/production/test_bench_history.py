"""``callbroker bench --history N``: past calls written into a bench server's database (``ops/history.py``)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from decimal import Decimal

import pytest
from django.utils.dateparse import parse_datetime

from callbroker.calls.models import CallAttempt
from callbroker.ops import bench, history


@pytest.fixture(scope="module")
def network_database(tmp_path_factory):
    """A migrated bench database with the demo network, no call yet (the real CLI, as the bench does it)."""
    server = bench.BenchServer(1)
    try:
        server.prepare()
        kept = tmp_path_factory.mktemp("history") / "network.sqlite3"
        shutil.copyfile(server.database_path, kept)
    finally:
        shutil.rmtree(server.dir, ignore_errors=True)
    return kept


@pytest.fixture
def database(network_database, tmp_path):
    copy = tmp_path / "callbroker.sqlite3"
    shutil.copyfile(network_database, copy)
    return copy


def rows(database, sql, *params):
    with closing(sqlite3.connect(database)) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, params)]


def test_past_calls_leave_the_rows_of_real_calls_in_batches(database, monkeypatch):
    monkeypatch.setattr(history, "BATCH", 100)
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    seen = []
    assert history.fill(database, 250, now=now, progress=lambda done, total: seen.append((done, total))) == 250
    assert seen == [(100, 250), (200, 250), (250, 250)]

    calls = rows(database, "SELECT c.*, n.campaign_id AS number_campaign, n.number AS number, "
                           "n.publisher_id AS number_publisher, t.campaign_id AS target_campaign "
                           "FROM calls_call c JOIN network_trackingnumber n ON n.id = c.tracking_number_id "
                           "LEFT JOIN network_target t ON t.id = c.connected_target_id ORDER BY c.id")
    assert len(calls) == 250 and len({c["call_sid"] for c in calls}) == 250
    started = [parse_datetime(c["started_at"]).replace(tzinfo=dt.UTC) for c in calls]
    # Oldest first, all inside the span that ends ENDS_DAYS_AGO days before now.
    assert started == sorted(started)
    assert now - dt.timedelta(days=history.ENDS_DAYS_AGO + history.DAYS) <= started[0]
    assert started[-1] <= now - dt.timedelta(days=history.ENDS_DAYS_AGO)
    assert started[-1] - started[0] > dt.timedelta(days=history.DAYS - 1)
    for call, began in zip(calls, started, strict=True):
        # Through a tracking number of its own campaign, to a target of that campaign when it talked.
        assert call["to_number"] == call["number"] and call["campaign_id"] == call["number_campaign"]
        assert call["publisher_id"] == call["number_publisher"]
        ended = parse_datetime(call["ended_at"]).replace(tzinfo=dt.UTC)
        assert ended - began == dt.timedelta(seconds=call["duration_seconds"])
        decision = json.loads(call["decision"])
        assert decision["ring"] and str(decision["ring"][0]) in decision["targets"]
        if call["verdict"] == "billable":
            assert call["target_campaign"] == call["campaign_id"] and call["talk_seconds"] >= 30
            assert Decimal(str(call["revenue"])) > 0 and json.loads(call["reason_codes"]) == []
        else:
            assert call["connected_target_id"] is None and call["talk_seconds"] == 0
            assert json.loads(call["reason_codes"]) == ["not_connected"]
    billable = [c for c in calls if c["verdict"] == "billable"]
    assert len(billable) == 150  # three calls in five talked to the buyer
    assert len({c["campaign_id"] for c in calls}) == len(rows(database, "SELECT id FROM network_campaign"))

    events = rows(database, "SELECT call_sid, kind, dedupe_key FROM calls_callevent")
    assert len(events) == 250 * len(history.EVENT_KINDS)
    assert {(e["call_sid"], e["kind"]) for e in events} == {
        (c["call_sid"], kind) for c in calls for kind in history.EVENT_KINDS}
    attempts = rows(database, "SELECT a.*, c.connected_target_id AS connected FROM calls_callattempt a "
                              "JOIN calls_call c ON c.id = a.call_id")
    assert len(attempts) == 150
    assert all(a["target_id"] == a["connected"] and a["result"] == "bridged" for a in attempts)


def test_past_calls_are_older_than_every_window_the_demo_counts_in(database):
    """So the measured calls route as on an empty database: no cap, duplicate or velocity window reaches them."""
    longest = max(r["duplicate_window"] for r in rows(database, "SELECT duplicate_window FROM network_campaign"))
    assert dt.timedelta(microseconds=longest) < dt.timedelta(days=history.ENDS_DAYS_AGO)
    assert history.ENDS_DAYS_AGO > 31  # monthly caps count the calendar month


def test_filled_calls_are_shown_by_the_product(database):
    """``calls show`` (the real CLI on that database) reads a past call whole: decision, attempt, verdict, money."""
    history.fill(database, 20)
    billable = rows(database, "SELECT call_sid, revenue FROM calls_call WHERE verdict = 'billable' LIMIT 1")[0]
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(database.parent)}
    env.pop("DATABASE_URL", None)
    shown = subprocess.run([sys.executable, "-m", "callbroker.cli", "calls", "show", billable["call_sid"], "--json"],
                           env=env, capture_output=True, text=True, check=True, timeout=60)
    call = json.loads(shown.stdout)
    assert call["sid"] == billable["call_sid"] and call["verdict"] == "billable"
    assert Decimal(call["revenue"]) == Decimal(str(billable["revenue"])) > 0
    assert call["decision"]["ring"][0]["id"] == call["connected_target"]["id"]
    assert len(call["attempts"]) == 1 and call["attempts"][0]["result"] == "bridged"


def test_a_database_without_a_network_is_refused_and_left_unchanged(database):
    with closing(sqlite3.connect(database)) as con, con:
        con.execute("DELETE FROM network_trackingnumber")
    with pytest.raises(ValueError, match="load a network first"):
        history.fill(database, 10)
    assert rows(database, "SELECT COUNT(*) AS n FROM calls_call") == [{"n": 0}]


def test_a_column_without_a_value_is_named():
    given = {k: v for k, v in history._ATTEMPT_COLUMNS.items() if k != "call_id"}
    with pytest.raises(ValueError, match=r"no value for calls_callattempt\.call_id"):
        history._columns(CallAttempt, given)
    with pytest.raises(ValueError, match="has no column calls_shoe_size"):
        history._columns(CallAttempt, {**history._ATTEMPT_COLUMNS, "calls_shoe_size": "1"})


def test_wrk_part_counts_only_the_calls_it_made_on_a_database_with_history():
    """Needs ``wrk``. The bench's check that every inbound request made a new call must not count the past ones."""
    out = io.StringIO()
    results = bench.run({"wrk"}, workers=1, seconds=1, connections=4, wrk_rounds=1, history=300, out=out)
    w = results["wrk"]
    assert "skipped" not in w, w
    assert results["history_calls"] == 300
    assert "300 of 300 past calls written" in out.getvalue()
    assert 0 < w["inbound_requests"] <= w["calls_recorded"] <= w["inbound_requests"] + 2 * (4 + 2)
    assert "WARNING" not in out.getvalue()


def test_bench_refuses_a_negative_history():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="argument --history: -5 is below 0"):
        call_command("bench", "--history", "-5", "--only", "core")


def test_bench_refuses_a_history_the_disk_cannot_hold_before_writing(monkeypatch, tmp_path):
    from django.core.management import CommandError, call_command

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    free = 500 * 2 * history.BYTES_PER_CALL - 1  # one byte short of two databases of 500 calls
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - free, free))
    refusal = rf"--history 500 needs about 3\.3 MB free in {tmp_path} \(2 databases of 1\.6 MB\), 3\.3 MB is"
    with pytest.raises(CommandError, match=refusal):
        call_command("bench", "--history", "500", "--only", "wrk")
    assert list(tmp_path.iterdir()) == []  # no bench directory made, nothing written


def test_an_sqlite_too_old_for_the_fill_is_named(database, monkeypatch):
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(ValueError, match=r"needs SQLite 3\.35 or later, this Python has 3\.34\.1"):
        history.fill(database, 10)
    assert rows(database, "SELECT COUNT(*) AS n FROM calls_call") == [{"n": 0}]


def test_defaults_are_bound_as_sqlite_stores_them():
    from django.db import models

    assert history._plain_value(CallAttempt, models.DecimalField(default=Decimal("1.50"))) == "1.50"
    assert history._plain_value(CallAttempt, models.IntegerField(default=3)) == 3
    assert history._plain_value(CallAttempt, models.CharField()) == ""
    extra = models.JSONField(default=dict)
    extra.set_attributes_from_name("extra")
    with pytest.raises(ValueError, match=r"calls_callattempt\.extra defaults to a dict"):
        history._plain_value(CallAttempt, extra)
