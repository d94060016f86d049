"""An inbound call reads the live counters of the targets its decision weighs, not of the whole campaign.

Given the e2e network (tests/e2e/network.yaml: e2e-plumbing has Line A for three Austin ZIPs, Line B
within 20 miles of 78701 and Line C for all of Texas, all open around the clock), when a call arrives
from a given ZIP, then ``live.read`` is asked only for the targets in the running (area, hours, pauses),
and the decision is the one the whole campaign's counters would give.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from callbroker.calls import services
from callbroker.calls.events import InboundCall
from callbroker.calls.models import Call
from callbroker.network import live
from callbroker.network.models import Target, TargetState

from tests.calls.conftest import PLUMBING

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

_sids = itertools.count(1)


@pytest.fixture
def reads(monkeypatch) -> list[list[str]]:
    """The target keys of every ``live.read`` the call flow makes."""
    seen: list[list[str]] = []
    keys = dict(Target.objects.values_list("id", "key"))
    real = live.read

    def spy(targets, timezones, now):
        seen.append([keys[t.id] for t in targets])
        return real(targets, timezones, now)

    monkeypatch.setattr(live, "read", spy)
    return seen


def call_from(zip_code: str) -> Call:
    sid = f"CA{next(_sids):032x}"
    services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550199", to=PLUMBING,
                                    from_zip=zip_code, from_state="TX"))
    return Call.objects.get(call_sid=sid)


def keyed(call: Call) -> tuple[list[str], dict[str, str]]:
    keys = dict(Target.objects.values_list("id", "key"))
    return [keys[i] for i in call.decision["ring"]], {keys[i]: why for why, ids in call.decision["excluded"].items() for i in ids}


def test_a_caller_from_dallas_has_only_the_texas_line_counted(reads):
    call = call_from("75201")
    assert reads == [["pipes-c"]]
    assert keyed(call) == (["pipes-c"], {"pipes-a": "out_of_area", "pipes-b": "out_of_area"})


def test_a_caller_from_downtown_austin_has_every_line_counted(reads):
    call = call_from("78701")
    assert reads == [["pipes-a", "pipes-b", "pipes-c"]]
    assert keyed(call) == (["pipes-a", "pipes-b", "pipes-c"], {})


def test_an_auto_paused_line_is_not_counted_and_is_excluded_as_paused(reads):
    line_c = Target.objects.get(key="pipes-c")
    TargetState.objects.filter(target=line_c).update(paused_until=timezone.now() + dt.timedelta(hours=1),
                                                     pause_reason="3 missed calls")
    call = call_from("75201")
    assert reads == [[]]
    assert keyed(call) == ([], {"pipes-a": "out_of_area", "pipes-b": "out_of_area", "pipes-c": "paused"})
    assert call.decision["auto_paused"] == [line_c.id]


def test_a_pause_that_has_run_out_counts_for_nothing(reads):
    TargetState.objects.filter(target__key="pipes-c").update(paused_until=timezone.now() - dt.timedelta(seconds=1))
    call = call_from("75201")
    assert reads == [["pipes-c"]]
    assert keyed(call)[0] == ["pipes-c"] and call.decision["auto_paused"] == []
