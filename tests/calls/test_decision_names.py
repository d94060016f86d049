"""A routed call stores the names of the targets in its ring with its decision, not of every target.

Given the e2e network (tests/e2e/network.yaml: e2e-plumbing has Line A for three Austin ZIPs, Line B within
20 miles of 78701 and Line C for all of Texas), when a caller from Dallas is routed, then only Line C rings
and only its name is stored; the call's routing still shows every excluded target by name (looked up).
"""

from __future__ import annotations

import pytest

from callbroker.calls import services
from callbroker.calls.events import InboundCall
from callbroker.calls.models import Call
from callbroker.calls.presenters import _excluded_pairs, decision_passes
from callbroker.core.model import Exclusion
from callbroker.network.models import Target

from tests.calls.conftest import PLUMBING

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]


def routed_from_dallas() -> Call:
    sid = "CA" + "d" * 32
    services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550199", to=PLUMBING,
                                    from_zip="75201", from_state="TX"))
    return Call.objects.get(call_sid=sid)


def test_only_the_ring_is_named_in_the_stored_decision():
    call = routed_from_dallas()
    line_c = Target.objects.get(key="pipes-c")
    assert call.decision["ring"] == [line_c.pk]
    assert call.decision["targets"] == {str(line_c.pk): str(line_c)}  # "Buyer / Target"
    lines_a_b = list(Target.objects.filter(key__in=["pipes-a", "pipes-b"]).order_by("pk").values_list("pk", flat=True))
    assert call.decision["excluded"] == {"out_of_area": lines_a_b}  # named when shown


def test_every_target_of_the_decision_is_shown_by_name():
    call = routed_from_dallas()
    line_c_then = str(Target.objects.get(key="pipes-c"))
    Target.objects.filter(key="pipes-c").update(name="Line C (renamed)")
    Target.objects.filter(key="pipes-a").update(name="Line A (renamed)")
    (routing,) = decision_passes(Call.objects.get(pk=call.pk))
    assert [entry["name"] for entry in routing["ring"]] == [line_c_then]  # as named at the decision
    names = {entry["id"]: entry["name"] for entry in routing["excluded"]}
    assert sorted(names.values()) == sorted(str(t) for t in Target.objects.filter(key__in=["pipes-a", "pipes-b"]))
    assert any("renamed" in name for name in names.values())  # looked up: today's name
    assert all(entry["code"] == "out_of_area" for entry in routing["excluded"])


def test_exclusions_are_stored_by_reason_in_routing_order():
    X = Exclusion
    excluded = [(7, X.CLOSED), (3, X.OUT_OF_AREA), (9, X.PAUSED), (1, X.CLOSED), (4, X.DAILY_CAP), (2, X.OUT_OF_AREA)]
    stored = services._by_reason(excluded)
    assert stored == {"paused": [9], "out_of_area": [3, 2], "closed": [7, 1], "daily_cap": [4]}
    assert list(stored) == ["paused", "out_of_area", "closed", "daily_cap"]
    assert sorted(_excluded_pairs(stored)) == sorted((tid, reason.value) for tid, reason in excluded)
    assert _excluded_pairs([[7, "closed"], {"id": 3, "code": "paused"}]) == [(7, "closed"), (3, "paused")]  # older
