"""The event log and the attempts in the admin at scale: newest first, a call's events in order, the kinds from
the code's list, and no date drill-down reading the whole log (their times lead no index, on purpose).

Counted in queries and read in query plans, not timed: with 150,000 events on SQLite, Django's drill-down
(``SELECT DISTINCT`` of every row's date) and the kind filter's ``SELECT DISTINCT kind`` read the whole log on
every page (0.8-1.5 s a page), and the list showed the oldest events first."""

from __future__ import annotations

import ast
import datetime as dt
import importlib
from pathlib import Path

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse
from django.utils import timezone

import callbroker

from callbroker.calls.choices import EventKind
from callbroker.calls.models import CallEvent

urlpatterns = [path("admin/", admin.site.urls)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


SRC = Path(callbroker.__file__).resolve().parent


def _event(sid: str, kind: str, at: dt.datetime, n: int) -> CallEvent:
    return CallEvent.objects.create(call_sid=sid, kind=kind, dedupe_key=f"{sid}:{kind}:{n}", params={},
                                    received_at=at)


def _plans(sqls: list[str]) -> list[str]:
    steps = []
    with connection.cursor() as cursor:
        for sql in sqls:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            steps += [row[-1] for row in cursor.fetchall()]
    return steps


def _whole_table_reads(sqls: list[str], table: str) -> list[str]:
    """The plan steps reading every row of ``table`` (a scan not stopped by a LIMIT)."""
    return [step for sql in sqls if f'"{table}"' in sql and " LIMIT " not in sql
            for step in _plans([sql]) if step.startswith(f"SCAN {table}")]


def test_the_event_log_lists_the_newest_first_and_a_calls_events_in_the_order_they_came(staff):
    now = timezone.now()
    for n in range(3):
        for step, kind in enumerate(("voice", "dial", "status")):
            _event(f"CA{n:032d}", kind, now - dt.timedelta(minutes=30 - 10 * n - step), step)
    url = reverse("admin:calls_callevent_changelist")

    listed = [event.pk for event in staff.get(url).context["cl"].result_list]
    one_call = [event.kind for event in staff.get(url, {"call_sid": "CA" + "0" * 31 + "1"}).context["cl"].result_list]

    assert listed == sorted(CallEvent.objects.values_list("pk", flat=True), reverse=True)
    assert one_call == ["voice", "dial", "status"]  # the call page's "Open these events": as it lists them


def test_the_event_log_and_the_attempts_read_no_whole_table_for_their_filters_and_dates(staff, make_call):
    now = timezone.now()
    make_call(started_at=now - dt.timedelta(minutes=5), attempts=[{"target": None, "result": "no-answer"}],
              events=[{"kind": "voice", "params": {}}, {"kind": "status", "params": {}}])
    for url, table in ((reverse("admin:calls_callevent_changelist"), "calls_callevent"),
                       (reverse("admin:calls_callattempt_changelist"), "calls_callattempt")):
        with CaptureQueriesContext(connection) as queries:
            response = staff.get(url)
        read = [q["sql"] for q in queries.captured_queries]

        assert response.status_code == 200
        assert not [sql for sql in read if "DISTINCT" in sql and table in sql], read  # dates or kinds, every row
    events = staff.get(reverse("admin:calls_callevent_changelist"))
    kind_filter = [spec for spec in events.context["cl"].filter_specs if spec.title == "kind"]
    assert [c["display"] for c in kind_filter[0].choices(events.context["cl"])][1:] == \
        [label for _, label in EventKind.choices]


def test_the_event_log_of_a_recent_moment_reads_a_range_of_the_primary_key(staff):
    now = timezone.now()
    for n in range(40):  # a day and a half of events, ids growing with their times
        _event(f"CA{n:032d}", "voice", now - dt.timedelta(hours=39.5 - n), 0)
    replayed = _event("CA" + "9" * 32, "status", now - dt.timedelta(hours=30), 0)  # written late, its own time
    url = reverse("admin:calls_callevent_changelist")

    with CaptureQueriesContext(connection) as queries:
        last_hour = staff.get(url, {"recent": "1h"})
    read = [q["sql"] for q in queries.captured_queries if "calls_callevent" in q["sql"]]
    day = staff.get(url, {"recent": "24h"}).context["cl"].result_list

    hour = last_hour.context["cl"].result_list
    assert [e.call_sid for e in hour] == [replayed.call_sid, "CA" + "0" * 30 + "39"]  # approximate: the replay too
    assert len(day) == 25 and all(e.received_at >= now - dt.timedelta(days=1) for e in day if e != replayed)
    assert not _whole_table_reads(read, "calls_callevent"), read
    assert staff.get(url, {"recent": "1h", "kind": "status"}).context["cl"].result_list[0] == replayed
    assert staff.get(url, {"recent": "never"}).status_code == 200  # not a choice: the whole log, newest first


def test_the_attempts_of_the_calls_started_lately_read_ranges_of_indexes(staff, make_call):
    now = timezone.now()
    calls = [make_call(started_at=now - dt.timedelta(hours=h), attempts=[{"target": None, "result": "no-answer"}])
             for h in (50, 30, 2, 0.5)]
    url = reverse("admin:calls_callattempt_changelist")

    with CaptureQueriesContext(connection) as queries:
        last_hour = staff.get(url, {"recent": "1h"}).context["cl"].result_list
    read = [q["sql"] for q in queries.captured_queries if "calls_callattempt" in q["sql"] or "calls_call" in q["sql"]]
    day = staff.get(url, {"recent": "24h"}).context["cl"].result_list
    none = staff.get(url, {"recent": "1h", "result": "bridged"})

    assert [a.call_id for a in last_hour] == [calls[3].pk]
    assert [a.call_id for a in day] == [calls[3].pk, calls[2].pk]
    assert none.status_code == 200
    assert not _whole_table_reads(read, "calls_callattempt"), read
    assert not _whole_table_reads(read, "calls_call"), read


@pytest.mark.parametrize("page,field", [("calls/callattempt", "started_at"), ("calls/callevent", "received_at")])
@pytest.mark.parametrize("query,listed", [("{f}__year=9999&{f}__month=12", True), ("{f}__year=9999", True),
                                          ("{f}__year=2026&{f}__month=13", True), ("{f}__year=0", False),
                                          ("{f}__year=99999", False), ("{f}__year=-1", False)])
def test_a_hand_made_date_on_the_lists_without_a_drill_down_is_a_filter_never_a_500(staff, make_call, page, field,
                                                                                    query, listed):
    """No date drill-down any more, so no end of year 9999 to work out: such a date is a filter like any other,
    an empty list (it was a bad lookup, the drill-down failing on it); a year out of the calendar is still a bad
    lookup (a redirect with ``?e=1``). A call of now, with its attempt and event, is there: the list is empty
    because the filter was applied, and this year's date lists it."""
    now = timezone.now()
    make_call(started_at=now, attempts=[{"target": None, "result": "no-answer"}],
              events=[{"kind": "voice", "params": {}}])
    this_year = staff.get(f"/admin/{page}/?{field}__year={timezone.localtime(now).year}")
    assert this_year.status_code == 200 and len(this_year.context["cl"].result_list) == 1
    response = staff.get(f"/admin/{page}/?{query.format(f=field)}")
    if listed:
        assert response.status_code == 200 and not response.context["cl"].result_list
    else:
        assert response.status_code == 302 and response.url == f"/admin/{page}/?e=1"


# ---- every kind the code writes is on the list -------------------------------------------------------------


#: Kinds passed on, not given: ``webhook(kind=…)``'s own parameter (the literals are its decorators'), and a
#: spooled webhook's ``record["kind"]`` replayed (found where the webhook is spooled).
PASSED_ON = {"kind", "record['kind']"}


def _written_kinds() -> dict[str, str]:
    """Every event kind the source writes: ``kind=`` given to ``EventIn``, ``CallEvent`` or ``webhook``, and the
    ``"kind"`` of a spooled webhook (replayed as an event of that kind). Names are read from their module."""
    found: dict[str, str] = {}
    for file in sorted(SRC.rglob("*.py")):
        if "migrations" in file.parts:
            continue
        module_name = "callbroker." + ".".join(file.relative_to(SRC).with_suffix("").parts)
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values = []
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in ("EventIn", "CallEvent", "webhook"):
                    values = [k.value for k in node.keywords if k.arg == "kind"]
            elif isinstance(node, ast.Dict) and file.parent.name == "carriers":
                keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
                if "kind" in keys and "params" in keys:  # a spooled webhook
                    values = [node.values[keys.index("kind")]]
            for value in values:
                where = f"{file.relative_to(SRC)}:{value.lineno}"
                if isinstance(value, ast.Constant):
                    found[value.value] = where
                elif isinstance(value, ast.Name | ast.Attribute) and ast.unparse(value) not in PASSED_ON:
                    module = importlib.import_module(module_name)
                    obj = module
                    for part in ast.unparse(value).split("."):
                        obj = getattr(obj, part)
                    found[str(obj)] = where
                elif ast.unparse(value) in PASSED_ON:
                    pass  # a kind passed on: found where it is given
                else:
                    found[ast.unparse(value)] = f"{where} (a kind the test cannot read: name it)"
    return found


def test_every_kind_the_code_writes_is_on_the_event_logs_list():
    written = _written_kinds()

    assert {"voice", "status", "fallback", "abandoned", "status_only", "judged_by_staff"} <= set(written)
    missing = {kind: where for kind, where in written.items() if kind not in EventKind.values}
    assert not missing, f"add these to calls.choices.EventKind (the admin's kind filter): {missing}"

