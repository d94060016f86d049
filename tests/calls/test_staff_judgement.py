"""An ended call whose campaign left the network while it went on has no campaign to judge it by: it stays
``pending``, for staff to judge (docs/call-flow.md). Until 2026-12-07 nothing let them: neither the admin nor
the CLI could set a verdict, and the call was listed by ``calls list --verdict pending`` for good. Staff now
judge it not billable (``judged_by_staff``) from the calls list's action or ``callbroker calls judge``: all
the calls named or none, refusing calls in progress and calls judged already, nothing posted to the ledger,
who judged, when and why written to the call's event log.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import check_ledger
from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import Call, CallEvent
from callbroker.network.models import Campaign, TrackingNumber

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

SOLO = "+15125550005"  # e2e-concurrency: rings its one line at once
PLUMBING = "+15125550001"  # e2e-plumbing: asks the ZIP when the carrier gives none


def sid(n: int) -> str:
    return f"CA{n:032x}"


def start(n: int, to: str, **carrier: str) -> None:
    services.start_call(InboundCall(call_sid=sid(n), account_sid="AC" + "0" * 32, from_raw=f"+1720555{n:04d}",
                                    to=to, **carrier))


def campaign_leaves_the_network(key: str) -> None:
    """Deleted as staff delete it in the admin: its tracking numbers first (they protect it), its targets with it."""
    TrackingNumber.objects.filter(campaign__key=key).delete()
    Campaign.objects.filter(key=key).delete()


def ended_with_no_campaign_after_a_buyer_talked(n: int) -> Call:
    start(n, SOLO, from_zip="78701", from_state="TX")
    services.dial_finished(sid(n), 1, DialOutcome(status="completed", bridged=True, duration=95))
    campaign_leaves_the_network("e2e-concurrency")  # while the caller talks to the buyer
    services.call_status(sid(n), StatusUpdate(status="completed", duration=120))
    return Call.objects.get(call_sid=sid(n))


def ended_with_no_campaign_at_the_ivr(n: int) -> Call:
    start(n, PLUMBING)
    campaign_leaves_the_network("e2e-plumbing")  # while the caller is asked the ZIP
    services.call_status(sid(n), StatusUpdate(status="completed", duration=12))
    return Call.objects.get(call_sid=sid(n))


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("calls", *args, stdout=out)
    return out.getvalue()


def pending() -> list[str]:
    return [call["sid"] for call in json.loads(run("list", "--verdict", "pending", "--json", "--limit", "0"))]


def judge_in_the_admin(client, calls: list[Call], note: str = "", *, confirm: bool = True):
    """The calls list's action, as a browser posts it: the action, then (``confirm``) the page's button."""
    url = reverse("admin:calls_call_changelist")
    data = {"action": "judge_not_billable_action", "_selected_action": [call.pk for call in calls]}
    page = client.post(url, {**data, "index": "0"})
    if not confirm or page.status_code != 200:
        return page
    return client.post(url, {**data, "post": "yes", "note": note})


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def assert_nothing_written(*calls: Call) -> None:
    for call in calls:
        before = (call.verdict, call.reason_codes, call.qualified_at)
        call.refresh_from_db()
        assert (call.verdict, call.reason_codes, call.qualified_at) == before
        assert not CallEvent.objects.filter(call_sid=call.call_sid, kind="judged_by_staff").exists()


# ---- the calls left pending, and how staff judge them ---------------------------------------------------------


def test_a_call_whose_campaign_left_while_a_buyer_talked_stays_pending_until_staff_judge_it_in_the_admin(staff):
    call = ended_with_no_campaign_after_a_buyer_talked(1)
    assert (call.stage, call.verdict, call.campaign_id) == ("ended", "pending", None)
    assert (call.talk_seconds, call.buyer_id is not None) == (95, True)  # a buyer talked: not `not_connected`
    assert pending() == [sid(1)]
    assert services.close_abandoned(call.started_at + services.ABANDONED_AFTER * 2) == []  # the sweep leaves it

    page = judge_in_the_admin(staff, [call], confirm=False)
    assert page.status_code == 200, messages_of(page)  # the confirmation page: the call, a note, the button
    html = page.content.decode()
    assert sid(1) in html and "talked 1:35" in html and 'name="note"' in html and "Judge 1 call not billable" in html
    assert Call.objects.get(pk=call.pk).verdict == "pending"  # nothing written before the button

    done = judge_in_the_admin(staff, [call], note="campaign closed by the client mid-call; not billed")

    assert done.status_code == 302
    assert messages_of(done) == ["Judged 1 call(s) not billable (judged_by_staff), nothing posted to the ledger."]
    call.refresh_from_db()
    assert (call.verdict, call.reason_codes, call.revenue, call.payout) == (
        "not_billable", ["judged_by_staff"], Decimal("0.00"), Decimal("0.00"))
    assert call.qualified_at is not None
    event = CallEvent.objects.get(call_sid=sid(1), kind="judged_by_staff")
    assert event.params == {"verdict": "not_billable", "reasons": ["judged_by_staff"], "by": "ops",
                            "note": "campaign closed by the client mid-call; not billed"}
    assert event.received_at == call.qualified_at  # when staff judged it
    assert not LedgerEntry.objects.exists() and check_ledger().ok  # nothing posted, the ledger agrees
    assert pending() == []
    shown = staff.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()
    # the reason in words: staff's own, as kept with the verdict
    assert "judged not billable by staff (ops): campaign closed by the client mid-call; not billed" in shown
    assert "judged_by_staff" in shown and "campaign closed by the client mid-call" in shown  # its event
    listed = staff.get(reverse("admin:calls_call_changelist")).content.decode()
    assert ">judged by staff</span>" in listed


def test_staff_judge_a_call_left_pending_from_the_command_line(capsys):
    call = ended_with_no_campaign_at_the_ivr(1)
    assert (call.stage, call.verdict) == ("ended", "pending")

    out = run("judge", sid(1), "--not-billable", "--note", "  campaign deleted by mistake  ")

    assert out == f"Judged 1 call not billable (judged_by_staff), nothing posted to the ledger:\n  {sid(1)}\n"
    call.refresh_from_db()
    assert (call.verdict, call.reason_codes, call.revenue, call.payout) == (
        "not_billable", ["judged_by_staff"], Decimal("0.00"), Decimal("0.00"))
    event = CallEvent.objects.get(call_sid=sid(1), kind="judged_by_staff")
    assert (event.params["by"], event.params["note"]) == ("cli", "campaign deleted by mistake")
    shown = run("show", sid(1), "--events")
    said = "judged not billable by staff from the command line: campaign deleted by mistake"  # staff's own reason
    assert f"- judged_by_staff: {said}" in shown
    assert "judged_by_staff" in shown.split("Events")[1] and '"by": "cli"' in shown
    data = json.loads(run("show", sid(1), "--json", "--events"))
    assert data["reasons"] == [{"code": "judged_by_staff",
                                "label": "judged not billable by staff (no rule left to judge it by)"}]
    assert data["reason_notes"] == {"judged_by_staff": said}
    assert data["events"][-1]["kind"] == "judged_by_staff"
    assert "not billable: judged_by_staff" in run("list")
    assert pending() == [] and not LedgerEntry.objects.exists()


def test_several_calls_are_judged_at_once_in_the_admin_and_the_cli(staff):
    first, second = ended_with_no_campaign_at_the_ivr(1), ended_with_no_campaign_after_a_buyer_talked(2)
    for n, number, key in ((3, "+15125550003", "e2e-ivr"), (4, "+15125550004", "e2e-missed")):
        start(n, number, from_zip="80202", from_state="CO")
        campaign_leaves_the_network(key)
        services.call_status(sid(n), StatusUpdate(status="completed", duration=30))
    start(5, PLUMBING)  # its campaign gone: a number no longer ours, judged `not_connected` when it ends
    services.call_status(sid(5), StatusUpdate(status="completed", duration=5))
    assert sorted(pending()) == [sid(1), sid(2), sid(3), sid(4)]

    assert judge_in_the_admin(staff, [first, second]).status_code == 302
    assert run("judge", sid(3), sid(4), "--not-billable").splitlines() == [
        "Judged 2 calls not billable (judged_by_staff), nothing posted to the ledger:", f"  {sid(3)}", f"  {sid(4)}"]

    assert [Call.objects.get(call_sid=sid(n)).reason_codes for n in range(1, 6)] == [["judged_by_staff"]] * 4 + [
        ["not_connected"]]
    assert [e.params["by"] for e in CallEvent.objects.filter(kind="judged_by_staff").order_by("call_sid")] == [
        "ops", "ops", "cli", "cli"]
    assert pending() == [] and not LedgerEntry.objects.exists()


# ---- refused: all or none, each call named with why -----------------------------------------------------------


def test_the_admin_refuses_calls_in_progress_or_judged_already_and_judges_none(staff, make_call):
    left = ended_with_no_campaign_at_the_ivr(1)
    start(2, SOLO, from_zip="78701", from_state="TX")  # ringing its buyer
    ringing = Call.objects.get(call_sid=sid(2))
    judged = make_call(call_sid="CA" + "b" * 32, verdict="billable", revenue=Decimal("45.00"))

    refused = judge_in_the_admin(staff, [left, ringing, judged], confirm=False)

    assert refused.status_code == 302  # back to the list, no confirmation page
    [message] = messages_of(refused)
    assert message.startswith("Nothing judged (all or none): ")
    assert f"{sid(2)} is still in progress (ringing a buyer)" in message
    assert f"{judged.call_sid} is judged already (billable)" in message
    assert sid(1) not in message
    assert_nothing_written(left, ringing, judged)


def test_a_call_judged_while_the_page_was_open_is_refused_when_it_is_posted(staff):
    """Another staff member (or the CLI) judged it between the confirmation page and its button: the button
    judges none of the calls, rather than some, and says which one was judged meanwhile."""
    first, second = ended_with_no_campaign_at_the_ivr(1), ended_with_no_campaign_after_a_buyer_talked(2)
    assert judge_in_the_admin(staff, [first, second], confirm=False).status_code == 200
    run("judge", sid(2), "--not-billable")

    done = staff.post(reverse("admin:calls_call_changelist"),
                      {"action": "judge_not_billable_action", "_selected_action": [first.pk, second.pk],
                       "post": "yes", "note": "both"})

    assert done.status_code == 302
    assert messages_of(done) == [f"Nothing judged (all or none): {sid(2)} is judged already (not billable: "
                                 "judged_by_staff)."]
    assert_nothing_written(first)
    assert CallEvent.objects.get(call_sid=sid(2), kind="judged_by_staff").params["by"] == "cli"  # the CLI's only


def test_a_note_too_long_is_shown_again_with_its_error_and_nothing_is_judged(staff):
    call = ended_with_no_campaign_at_the_ivr(1)

    page = judge_in_the_admin(staff, [call], note="x" * 1001)

    assert page.status_code == 200  # the confirmation page again, the note's error on it
    assert page.context["form"].errors["note"] == ["Ensure this value has at most 1000 characters (it has 1001)."]
    assert_nothing_written(call)


def test_the_action_is_offered_to_staff_who_may_change_calls_only(client, django_user_model):
    from django.contrib.auth.models import Permission

    call = ended_with_no_campaign_at_the_ivr(1)
    url = reverse("admin:calls_call_changelist")
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_call"))
    editor = django_user_model.objects.create_user("editor", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["view_call", "change_call"]))

    client.force_login(viewer)
    listed = client.get(url).content.decode()
    posted = judge_in_the_admin(client, [call])
    assert "judge_not_billable_action" not in listed
    assert posted.status_code == 200 and 'name="note"' not in posted.content.decode()  # the list, no page
    assert_nothing_written(call)

    client.force_login(editor)
    assert "judge_not_billable_action" in client.get(url).content.decode()
    assert judge_in_the_admin(client, [call]).status_code == 302
    assert CallEvent.objects.get(call_sid=sid(1), kind="judged_by_staff").params["by"] == "editor"


def test_the_cli_refuses_calls_in_progress_judged_already_or_unknown_and_judges_none(make_call):
    left = ended_with_no_campaign_at_the_ivr(1)
    start(2, SOLO, from_zip="78701", from_state="TX")
    ringing = Call.objects.get(call_sid=sid(2))
    judged = make_call(call_sid="CA" + "b" * 32, verdict="not_billable", reason_codes=["not_connected"])

    with pytest.raises(CommandError) as refused:
        run("judge", sid(1), sid(2), judged.call_sid, "CAnosuchcall", "--not-billable")

    assert str(refused.value) == (
        f"Nothing judged (all or none): {sid(2)} is still in progress (ringing a buyer): its final status judges "
        "it, or the six-hour close (calls close-abandoned); "
        f"{judged.call_sid} is judged already (not billable: not_connected); CAnosuchcall is no call.")
    assert_nothing_written(left, ringing, judged)


def test_a_call_is_judged_by_staff_once():
    ended_with_no_campaign_at_the_ivr(1)
    run("judge", sid(1), "--not-billable", "--note", "first")

    with pytest.raises(CommandError, match=rf"{sid(1)} is judged already \(not billable: judged_by_staff\)"):
        run("judge", sid(1), "--not-billable", "--note", "second")

    assert [e.params["note"] for e in CallEvent.objects.filter(kind="judged_by_staff")] == ["first"]


@pytest.mark.parametrize("args,error", [
    (("judge", "--not-billable"), "CALLSID"),
    (("judge", "CA1"), "--not-billable"),
    (("judge", " ", "--not-billable"), "CALLSID: give a whole CallSid (one is empty)."),
    (("judge", "CA1", "--not-billable", "--note", "x" * 1001), "--note: at most 1000 characters (it has 1001)."),
    (("judge", "CA1", "--not-billable", "--note", "a\x00b"), "--note: it holds a NUL character; remove it."),
    (("judge", "CA\x001", "--not-billable"), "Nothing judged (all or none): CA\x001 is no call."),
])
def test_bad_input_to_the_cli_is_one_line_naming_it_and_writes_nothing(args, error):
    ended_with_no_campaign_at_the_ivr(1)

    with pytest.raises(CommandError) as refused:
        run(*args)

    assert error in str(refused.value)
    assert not CallEvent.objects.filter(kind="judged_by_staff").exists()
    assert Call.objects.get(call_sid=sid(1)).verdict == "pending"



def test_a_note_on_several_lines_is_shown_indented_under_its_reason():
    """Its later lines were printed from the first column, reading as lines of the sections around it."""
    ended_with_no_campaign_at_the_ivr(1)
    run("judge", sid(1), "--not-billable", "--note", "campaign deleted by mistake\nticket OPS-12\n\nrefund none")

    shown = run("show", sid(1)).splitlines()
    at = shown.index("    - judged_by_staff: judged not billable by staff from the command line: "
                     "campaign deleted by mistake")
    assert shown[at + 1:at + 5] == ["        ticket OPS-12", " " * 8, "        refund none", "  Revenue      $0.00"]
