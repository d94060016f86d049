"""The Django admin for calls: staff read everything, and may only record the buyer's outcome."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import path, reverse
from django.utils import timezone

from callbroker.calls.models import Call, CallAttempt, CallEvent, KeptStatus
from callbroker.calls.presenters import REASON_LABELS

# Only the admin is mounted, so these tests do not depend on the carrier views importing cleanly.
urlpatterns = [path("admin/", admin.site.urls)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def change_url(call: Call) -> str:
    return reverse("admin:calls_call_change", args=[call.pk])


def edit_post_data(response, **edits) -> dict:
    """The POST body of the call change form as rendered, with ``edits`` applied (the hidden copies of the
    values the page showed too, as a browser posts them)."""
    form = response.context["adminform"].form
    data = {name: ("" if form[name].value() is None else form[name].value()) for name in form.fields}
    data.update({form[name].html_initial_name: "" if form[name].initial is None else form[name].initial
                 for name in form.fields if form.fields[name].show_hidden_initial})
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
    data.update(edits)
    return data


def test_changelist_shows_the_call_with_its_columns(staff, routed_call):
    response = staff.get(reverse("admin:calls_call_changelist"))

    assert response.status_code == 200
    html = response.content.decode()
    assert routed_call.call_sid in html
    assert "Austin Plumbing" in html
    assert "78704 (typed)" in html  # the ZIP source in words, not its code
    assert "ACME Plumbing / Main line" in html
    assert f'title="{routed_call.call_sid}"' in html  # the SID is shortened, whole in the tooltip
    assert "$45.00" in html  # money with its currency


def test_changelist_puts_the_verdict_right_after_the_time_and_reasons_in_words(staff, make_call):
    call = make_call(verdict="not_billable", reason_codes=["not_connected", "below_buffer"])

    response = staff.get(reverse("admin:calls_call_changelist"))

    html = response.content.decode()
    headers = [column["class_attrib"] for column in response.context["result_headers"]]
    headers = [header for header in headers if "action-checkbox" not in header]  # the action's tick box first
    assert "column-when" in headers[0] and "column-verdict" in headers[1], headers
    assert call.call_sid[:10] in html
    assert ">not connected</span>, <span" in html and ">below buffer</span>" in html
    assert f'title="{REASON_LABELS["not_connected"]}"' in html


@pytest.mark.parametrize("query", [
    {"verdict__exact": "billable"},
    {"stage__exact": "ended"},
    {"zip_source__exact": "ivr"},
    {"started_at__year": "2026", "started_at__month": "11"},
    {"q": "CA0123456789abcdef"},
    {"q": "+15125550001"},
    {"q": "+15124440001"},
])
def test_changelist_filters_and_search_find_the_call(staff, routed_call, query):
    response = staff.get(reverse("admin:calls_call_changelist"), query)

    assert response.status_code == 200
    assert routed_call.call_sid in response.content.decode()


def test_changelist_filters_leave_other_calls_out(staff, routed_call, make_call):
    other = make_call(verdict="not_billable", reason_codes=["duplicate"])
    url = reverse("admin:calls_call_changelist")

    by_campaign = staff.get(url, {"campaign__id__exact": routed_call.campaign_id}).content.decode()
    by_publisher = staff.get(url, {"publisher__id__exact": other.publisher_id}).content.decode()
    by_verdict = staff.get(url, {"verdict__exact": "not_billable"}).content.decode()

    assert routed_call.call_sid in by_campaign and other.call_sid not in by_campaign
    assert other.call_sid in by_publisher and routed_call.call_sid not in by_publisher
    assert other.call_sid in by_verdict and "duplicate" in by_verdict
    assert routed_call.call_sid not in by_verdict


def test_change_view_shows_the_decision_attempts_and_events(staff, routed_call):
    response = staff.get(change_url(routed_call))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Bob&#x27;s Pipes / Day line" in html  # excluded target, by name
    assert "— closed</li>" in html  # label only: the code is the same word
    assert "daily cap reached (daily_cap)" in html  # label, then the code as it differs
    assert "Bob&#x27;s Pipes / Night line" in html  # ring list and first attempt
    assert "No answer" in html and "Connected" in html
    assert "CallStatus" in html  # carrier events
    assert "TN-Validation-Passed-A" in html


def test_change_view_explains_why_a_call_is_not_billable(staff, make_call):
    call = make_call(verdict="not_billable", reason_codes=["below_buffer", "duplicate"])

    html = staff.get(change_url(call)).content.decode()

    assert f'<span title="below_buffer">{REASON_LABELS["below_buffer"]}</span>' in html
    assert f'<span title="duplicate">{REASON_LABELS["duplicate"]}</span>' in html


def test_change_view_names_the_buffer_that_applied_as_the_call_was_judged(
        staff, make_campaign, make_target, make_call):
    # given a call judged 29 s on a line of its own 30 s minimum (the campaign's buffer: 60 s), the sentence
    # kept with the verdict, and one judged before sentences were kept
    campaign = make_campaign(buffer_seconds=60)
    line = make_target(campaign=campaign, min_talk_seconds=30)
    judged = "talked 29 s with the buyer; 30 s needed (this buyer's own minimum)"
    call = make_call(campaign=campaign, verdict="not_billable", reason_codes=["below_buffer"],
                     reason_notes={"below_buffer": judged},
                     attempts=[{"target": line, "result": "bridged", "talk_seconds": 29}])
    before = make_call(campaign=campaign, verdict="not_billable", reason_codes=["below_buffer"],
                       attempts=[{"target": line, "result": "bridged", "talk_seconds": 29}])
    # when the line's minimum is 20 s since (29 s would pass it)
    line.min_talk_seconds = 20
    line.save()
    # then the page still names the buffer that applied, with its figure; the older call, its label
    html = staff.get(change_url(call)).content.decode()
    assert ('<span title="below_buffer">talked 29 s with the buyer; 30 s needed '
            "(this buyer&#x27;s own minimum)</span>") in html
    html = staff.get(change_url(before)).content.decode()
    assert f'<span title="below_buffer">{REASON_LABELS["below_buffer"]}</span>' in html
    assert "needed" not in html


def test_a_buyer_who_hung_up_at_once_talked_0_s_on_the_page_and_the_list(staff, make_target, make_call):
    # given a call bridged to a buyer who hung up at once (DialCallDuration 0: below the buffer), and one
    # no buyer answered
    line = make_target()
    hung_up = make_call(campaign=line.campaign, verdict="not_billable", reason_codes=["below_buffer"],
                        reason_notes={"below_buffer": "talked 0 s with the buyer; 60 s needed"},
                        attempts=[{"target": line, "result": "bridged", "talk_seconds": 0}])
    unanswered = make_call(campaign=line.campaign, verdict="not_billable", reason_codes=["not_connected"],
                           attempts=[{"target": line, "result": "no-answer"}])
    # when staff look at them, then the bridged call talked 0:00 (as `calls list` and the reason say), and
    # only the call no buyer answered has no talk time
    page = staff.get(change_url(hung_up)).content.decode()
    assert re.search(r'field-talk_time.*?<div class="readonly">0:00 \(0 s\)</div>', page, re.S)
    assert "talked 0 s with the buyer" in page
    page = staff.get(change_url(unanswered)).content.decode()
    assert re.search(r'field-talk_time.*?<div class="readonly">—</div>', page, re.S)
    listed = staff.get(reverse("admin:calls_call_changelist")).content.decode()
    assert listed.count("talked 0:00") == 1


def test_change_view_starts_with_a_summary_in_words(staff, routed_call):
    response = staff.get(change_url(routed_call))

    html = response.content.decode()
    fieldsets = [fieldset.name for fieldset in response.context["adminform"]]
    assert fieldsets[:2] == ["Summary", "Routing"]
    summary = html[html.index("Summary"):html.index("field-routing")]
    for text in ("Billable", "$45.00", "ACME Plumbing / Main line", "2:31 (151 s)", "+15125550001",
                 "Austin Plumbing", " UTC"):
        assert text in summary, text
    # the attempts come right after the routing, before the outcome form and the carrier details
    assert html.index("field-routing") < html.index("#1 ") < html.index("id_outcome") \
        < html.index("Carrier details")


def test_change_view_says_when_nobody_was_rung(staff, make_call):
    call = make_call(verdict="not_billable", reason_codes=["not_connected"], attempts=[])

    html = staff.get(change_url(call)).content.decode()

    assert "No attempts: the call was not routed to any buyer." in html


def test_only_the_outcome_fields_are_editable(staff, routed_call):
    response = staff.get(change_url(routed_call))

    assert set(response.context["adminform"].form.fields) == {"outcome", "job_value", "outcome_note"}
    [attempts] = response.context["inline_admin_formsets"]
    assert not attempts.has_add_permission
    assert not attempts.has_change_permission
    assert not attempts.has_delete_permission


def test_posting_an_outcome_saves_it_and_nothing_else(staff, routed_call):
    page = staff.get(change_url(routed_call))
    data = edit_post_data(page, outcome="booked", job_value="350.00", outcome_note="Water heater",
                          verdict="not_billable", talk_seconds="999", revenue="0")

    response = staff.post(change_url(routed_call), data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    routed_call.refresh_from_db()
    assert routed_call.outcome == "booked"
    assert routed_call.job_value == Decimal("350.00")
    assert routed_call.outcome_note == "Water heater"
    assert routed_call.outcome_at is not None
    # read-only facts ignored even when posted
    assert routed_call.verdict == "billable"
    assert routed_call.talk_seconds == 151
    assert routed_call.revenue == Decimal("45.00")
    assert list(routed_call.attempts.values_list("result", flat=True)) == ["no-answer", "bridged"]


def test_an_outcome_saved_while_the_call_was_judged_again_keeps_the_new_verdict(staff, routed_call, monkeypatch):
    """The page was loaded before a late callback judged the call again: saving the outcome writes the
    outcome only, not the page's old copy of the verdict and the money."""
    from callbroker.calls.admin import CallAdmin

    page = staff.get(change_url(routed_call))
    original = CallAdmin.get_object

    def judged_meanwhile(self, request, object_id, from_field=None):
        obj = original(self, request, object_id, from_field)  # the form's copy: billable, 45.00
        Call.objects.filter(pk=obj.pk).update(verdict="not_billable", reason_codes=["duplicate"],
                                              revenue=Decimal("0.00"), payout=Decimal("0.00"))
        return obj

    monkeypatch.setattr(CallAdmin, "get_object", judged_meanwhile)
    response = staff.post(change_url(routed_call), edit_post_data(page, outcome="booked", job_value="350.00"))

    assert response.status_code == 302
    routed_call.refresh_from_db()
    assert (routed_call.outcome, routed_call.job_value) == ("booked", Decimal("350.00"))
    assert (routed_call.verdict, routed_call.reason_codes, routed_call.revenue) == ("not_billable", ["duplicate"],
                                                                                    Decimal("0.00"))


def test_a_negative_job_value_is_refused_with_a_message(staff, routed_call):
    page = staff.get(change_url(routed_call))
    response = staff.post(change_url(routed_call), edit_post_data(page, outcome="booked", job_value="-350.00"))

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["job_value"] == ["A job value can't be negative."]
    routed_call.refresh_from_db()
    assert (routed_call.outcome, routed_call.job_value) == ("", None)


def test_calls_cannot_be_added_or_deleted(staff, routed_call):
    assert staff.get(reverse("admin:calls_call_add")).status_code == 403
    assert staff.get(reverse("admin:calls_call_delete", args=[routed_call.pk])).status_code == 403


def test_attempts_and_events_are_view_only(staff, routed_call):
    attempt = CallAttempt.objects.filter(call=routed_call).first()
    event = CallEvent.objects.filter(call_sid=routed_call.call_sid).first()

    for model, obj in (("callattempt", attempt), ("callevent", event)):
        assert staff.get(reverse(f"admin:calls_{model}_changelist")).status_code == 200
        view = staff.get(reverse(f"admin:calls_{model}_change", args=[obj.pk]))
        assert view.status_code == 200
        assert not view.context["adminform"].form.fields  # nothing editable
        assert staff.get(reverse(f"admin:calls_{model}_add")).status_code == 403
        assert staff.get(reverse(f"admin:calls_{model}_delete", args=[obj.pk])).status_code == 403
        assert staff.post(reverse(f"admin:calls_{model}_change", args=[obj.pk]), {}).status_code == 403

    events = staff.get(reverse("admin:calls_callevent_changelist"), {"call_sid": routed_call.call_sid})
    assert events.status_code == 200 and "status" in events.content.decode()


def kept_status(sid: str = "CA" + "5f" * 16) -> KeptStatus:
    """A final status kept for a call not recorded yet, with its event, as the status webhook keeps it."""
    at = timezone.now()
    CallEvent.objects.create(call_sid=sid, kind="status", dedupe_key=f"{sid}:status:ringing:1", received_at=at,
                             params={"CallSid": sid, "CallStatus": "ringing"})
    CallEvent.objects.create(call_sid=sid, kind="status", dedupe_key=f"{sid}:status:completed:4", received_at=at,
                             params={"CallSid": sid, "CallStatus": "completed", "CallDuration": "42"})
    inbound = {"call_sid": sid, "account_sid": "AC" + "0" * 32, "from_raw": "+17205550142", "to": "+15124440001",
               "from_zip": "78701", "from_state": "TX", "from_city": "", "stir_verstat": ""}
    return KeptStatus.objects.create(call_sid=sid, inbound=inbound, received_at=at)


def test_the_kept_statuses_are_listed_read_only_with_what_they_say(staff, routed_call):
    kept = kept_status()
    listed = staff.get(reverse("admin:calls_keptstatus_changelist"))
    html = listed.content.decode()
    assert listed.status_code == 200
    assert kept.call_sid in html and "+17205550142 → +15124440001 (78701, TX)" in html
    assert "completed, 0:42" in html  # its final status, from the event log (not the ringing one)
    assert "Final statuses kept for their calls" in staff.get(reverse("admin:index")).content.decode()
    found = staff.get(reverse("admin:calls_keptstatus_changelist"), {"q": kept.call_sid})
    assert kept.call_sid in found.content.decode()

    view = staff.get(reverse("admin:calls_keptstatus_change", args=[kept.pk]))
    assert view.status_code == 200 and not view.context["adminform"].form.fields  # nothing editable
    assert "completed, 0:42" in view.content.decode() and "?call_sid=" + kept.call_sid in view.content.decode()
    assert staff.get(reverse("admin:calls_keptstatus_add")).status_code == 403
    assert staff.post(reverse("admin:calls_keptstatus_change", args=[kept.pk]), {}).status_code == 403
    KeptStatus.objects.filter(pk=kept.pk).update(inbound={"to": "+15124440001"})
    CallEvent.objects.filter(call_sid=kept.call_sid).delete()  # by hand: the list still shows, not a 500
    html = staff.get(reverse("admin:calls_keptstatus_changelist")).content.decode()
    assert "unknown caller → +15124440001" in html and "not in the event log" in html


def test_a_kept_status_may_be_taken_off_the_list_its_event_stays(staff):
    """A to-do item of the sweep, not a record: deleted, the status is not turned into a call of its own (a
    status the sweep fails to record at every pass can be taken off); its event stays in the log."""
    kept = kept_status()
    url = reverse("admin:calls_keptstatus_delete", args=[kept.pk])
    assert staff.get(url).status_code == 200

    assert staff.post(url, {"post": "yes"}).status_code == 302

    assert not KeptStatus.objects.exists()
    assert CallEvent.objects.filter(call_sid=kept.call_sid, kind="status").count() == 2


def test_clearing_an_outcome_clears_when_it_was_recorded(staff, routed_call):
    page = staff.get(change_url(routed_call))
    assert staff.post(change_url(routed_call), edit_post_data(page, outcome="booked", job_value="350.00")
                      ).status_code == 302
    routed_call.refresh_from_db()
    assert routed_call.outcome_at is not None
    page = staff.get(change_url(routed_call))
    assert staff.post(change_url(routed_call), edit_post_data(page, outcome="", job_value="", outcome_note="")
                      ).status_code == 302
    routed_call.refresh_from_db()
    assert (routed_call.outcome, routed_call.job_value, routed_call.outcome_at) == ("", None, None)


# ---- money in the currency it was charged in -------------------------------------------------------


def post_charge(call: Call, currency: str, **fields) -> None:
    """The call's charge and payout as billing posted them, in ``currency`` (``fields``: more of the entries')."""
    from callbroker.billing.models import LedgerEntry

    for kind, amount in (("charge", call.revenue), ("payout", call.payout)):
        LedgerEntry.objects.create(call=call, call_sid=call.call_sid, kind=kind, generation=1, amount=amount,
                                   campaign=call.campaign, currency=currency, memo="billable call", **fields)


def test_a_call_shows_its_money_in_the_currency_it_was_charged_in(staff, routed_call, make_call):
    post_charge(routed_call, "USD")
    routed_call.campaign.currency = "EUR"  # changed after the call was charged
    routed_call.campaign.save()
    unposted = make_call(campaign=routed_call.campaign, verdict="billable", revenue=Decimal("30.00"))

    listed = staff.get(reverse("admin:calls_call_changelist")).content.decode()
    page = staff.get(change_url(routed_call)).content.decode()

    assert "$45.00" in listed and "€45.00" not in listed
    assert "$45.00" in page and "$20.00" in page and "€" not in page
    assert "€30.00" in listed  # nothing posted for it: the campaign's currency
    assert "€30.00" in staff.get(change_url(unposted)).content.decode()


def test_the_changelist_reads_a_fixed_number_of_queries(staff, routed_call, make_call,
                                                        django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    post_charge(routed_call, "USD")
    with CaptureQueriesContext(connection) as one:
        assert staff.get(reverse("admin:calls_call_changelist")).status_code == 200
    for _ in range(5):
        call = make_call(campaign=routed_call.campaign, verdict="billable", revenue=Decimal("45.00"),
                         payout=Decimal("20.00"))
        post_charge(call, "USD")
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert staff.get(reverse("admin:calls_call_changelist")).status_code == 200


def test_a_call_whose_target_was_deleted_still_shows_who_it_reached(staff, routed_call):
    routed_call.targets["main"].delete()

    listed = staff.get(reverse("admin:calls_call_changelist")).content.decode()
    page = staff.get(change_url(routed_call)).content.decode()

    assert "ACME Plumbing / (deleted target)" in listed and "talked 2:31" in listed
    assert "ACME Plumbing / (deleted target)" in page and "2:31 (151 s)" in page


# ---- the date hierarchy with months of calls -------------------------------------------------------


def _hierarchy_links(html: str) -> list[str]:
    """The titles of the date hierarchy's links (years, months or days), in page order."""
    nav = re.search(r'<nav class="toplinks">(.*?)</nav>', html, re.S)
    return re.findall(r'<a href="[^"]*">([^<&]+)</a>', nav.group(1)) if nav else []


@pytest.mark.parametrize("page,field", [("calls/call", "started_at"), ("billing/ledgerentry", "created_at")])
def test_the_date_hierarchy_finds_the_months_without_reading_every_row(staff, make_call, page, field):
    """Django listed them with a SELECT DISTINCT of every row's date truncated to the month: the whole table
    read on the list's first page (0.2-0.3 s for 50,000 calls on SQLite, growing with the months kept)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    utc = dt.timezone.utc
    for at in (dt.datetime(2026, 10, 3, 9, tzinfo=utc), dt.datetime(2026, 10, 17, 23, 30, tzinfo=utc),
               dt.datetime(2026, 12, 5, 12, tzinfo=utc)):
        call = make_call(started_at=at, verdict="billable", revenue=Decimal("45.00"), payout=Decimal("20.00"))
        post_charge(call, "USD", created_at=at)

    url = reverse(f"admin:{page.replace('/', '_')}_changelist")
    with CaptureQueriesContext(connection) as queries:
        months = staff.get(url)
    read = [q["sql"] for q in queries.captured_queries]  # before the next request empties Django's log
    days = staff.get(url, {f"{field}__year": "2026", f"{field}__month": "10"})  # Django's: the month's rows

    assert months.status_code == days.status_code == 200
    assert _hierarchy_links(months.content.decode()) == ["October 2026", "December 2026"]
    assert _hierarchy_links(days.content.decode()) == ["October 3", "October 17"]
    whole_table = [sql for sql in read if "DISTINCT" in sql and field in sql]
    assert read and not whole_table, whole_table


# ---- the attempts list with months of calls -------------------------------------------------------------


def test_the_attempts_list_reads_its_page_along_an_index_the_calls_recorded_last_first(staff, make_call):
    """It sorted every attempt, with its call, target and buyer, by its call's start time on every page."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    start = dt.datetime(2026, 11, 27, 14, tzinfo=dt.timezone.utc)
    calls = [make_call(started_at=start + dt.timedelta(minutes=n), attempts=[
        {"target": None, "result": "no-answer"}, {"target": None, "result": "no-answer"}]) for n in range(3)]

    with CaptureQueriesContext(connection) as queries:
        response = staff.get(reverse("admin:calls_callattempt_changelist"))

    assert response.status_code == 200
    shown = [(attempt.call_id, attempt.sequence) for attempt in response.context["cl"].result_list]
    assert shown == [(call.pk, sequence) for call in reversed(calls) for sequence in (1, 2)]
    page = [q["sql"] for q in queries.captured_queries
            if q["sql"].startswith('SELECT "calls_callattempt"."id"') and " ORDER BY " in q["sql"]]
    assert len(page) == 1, page
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + page[0])
        plan = [row[-1] for row in cursor.fetchall()]
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan  # not every attempt sorted (a ring's few may be)


# ---- hand-made filters out of the calendar: a bad lookup (redirect with ?e=1), never a 500 --------------


@pytest.mark.parametrize("page,field", [("calls/call", "started_at"), ("calls/keptstatus", "received_at"),
                                        ("billing/ledgerentry", "created_at")])
@pytest.mark.parametrize("query", ["{f}__year=9999&{f}__month=12", "{f}__year=9999", "{f}__year=0",
                                   "{f}__year=99999", "{f}__year=-1", "{f}__year=2026&{f}__month=13"])
def test_a_date_out_of_the_calendar_is_a_bad_lookup_not_a_500(staff, routed_call, page, field, query):
    url = f"/admin/{page}/"
    response = staff.get(f"{url}?{query.format(f=field)}")
    assert response.status_code == 302 and response.url == f"{url}?e=1"
    assert staff.get(response.url).status_code == 200


def test_a_date_at_the_calendars_edge_still_filters(staff, routed_call):
    for query in ("started_at__year=9998&started_at__month=12", "started_at__year=1"):
        response = staff.get(f"/admin/calls/call/?{query}")
        assert response.status_code == 200 and routed_call.call_sid not in response.content.decode()
    response = staff.get("/admin/calls/call/?started_at__year=2026&started_at__month=11")
    assert routed_call.call_sid in response.content.decode()


@pytest.mark.parametrize("query", ["date_joined__year=0", "date_joined__year=99999", "last_login__year=-1",
                                   "date_joined__year=10000"])
def test_a_date_out_of_the_calendar_on_the_staff_user_list_is_a_bad_lookup_not_a_500(staff, query):
    url = reverse("admin:auth_user_changelist")
    response = staff.get(f"{url}?{query}")
    assert response.status_code == 302 and response.url == f"{url}?e=1"
    assert staff.get(response.url).status_code == 200
    listed = staff.get(f"{url}?date_joined__year={timezone.now().year}").content.decode()
    assert ">ops<" in listed  # a date in the calendar still filters


def test_every_admin_list_turns_a_bad_date_into_a_bad_lookup_djangos_staff_users_and_groups_too():
    from django.test import RequestFactory

    from callbroker.ops.admin_lists import ChangeList

    request = RequestFactory().get("/")
    lists = {model._meta.label: model_admin.get_changelist(request)
             for model, model_admin in admin.site._registry.items()}
    assert lists["auth.User"] is ChangeList and lists["auth.Group"] is ChangeList
    assert all(change_list is ChangeList for change_list in lists.values()), lists


def test_every_admin_list_of_ours_turns_a_bad_date_into_a_bad_lookup():
    from django.test import RequestFactory

    from callbroker.ops.admin_lists import ChangeList

    ours = {model_admin for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in ("network", "calls", "billing")}
    assert len(ours) == 12
    request = RequestFactory().get("/")
    assert all(model_admin.get_changelist(request) is ChangeList for model_admin in ours)


def every_admin_action() -> list[tuple[str, str]]:
    """(changelist URL name, action) for every action a superuser is offered on every registered admin list,
    Django's too (a read-only list offers none)."""
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    return sorted((f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist", name)
                  for model, model_admin in admin.site._registry.items()
                  for name in model_admin.get_actions(request))


@pytest.mark.parametrize("selected", [["abc"], ["1.5"], ["99999999999999999999"], ["1", "x\x00"], ["-"]])
@pytest.mark.parametrize(("changelist", "action"), every_admin_action())
def test_an_action_asked_for_a_row_that_is_no_id_does_nothing_and_says_so_not_a_500(
        staff, routed_call, changelist, action, selected):
    """Django filters the list by the values posted as selected rows: a value that is no id (a hand-made or
    tampered form) failed as the action read its rows, ``ValueError: Field 'id' expected a number``, a 500
    on every list and every action, ``delete_selected`` included. Both steps of an action with a page of
    its own (the first post, then its confirmation) are refused alike."""
    from django.apps import apps

    counts = {model: model.objects.count() for model in apps.get_models()}
    verdict = Call.objects.get(pk=routed_call.pk).verdict
    url = reverse(changelist)
    for extra in ({"index": "0"}, {"post": "yes", "note": "x"}):  # the list's post; a confirmation page's
        response = staff.post(url, {"action": action, "_selected_action": selected, **extra})
        assert response.status_code == 302 and response.url == url, response.status_code
        page = staff.get(response.url).content.decode()
        assert "is not the id of a" in page and "no action was taken" in page
    assert {model: model.objects.count() for model in apps.get_models()} == counts
    assert Call.objects.get(pk=routed_call.pk).verdict == verdict


def test_an_outcome_cleared_while_another_staff_member_saved_a_job_value_keeps_its_time(staff, routed_call,
                                                                                        monkeypatch):
    """Two staff members on one call's page at once: one clears the outcome while the other saves a job value.
    Each writes only the fields it changed, so the row ends with the other's job value; whether it is cleared
    (no recorded time) is judged from that row, not from the clearing form's copy read before the other's save
    (which had no job value: the call was left with a job value and no time it was recorded).

    The interleaving of PostgreSQL (read committed: the form's copy is read, the other save commits, then this
    one writes) made deterministic; tests/postgres/test_outcomes.py runs it with two real connections."""
    from callbroker.calls.admin import CallAdmin

    Call.objects.filter(pk=routed_call.pk).update(outcome="booked", outcome_at=timezone.now())
    page = staff.get(change_url(routed_call))
    original = CallAdmin.get_object

    def job_value_saved_meanwhile(self, request, object_id, from_field=None):
        obj = original(self, request, object_id, from_field)  # the form's copy: booked, no job value
        Call.objects.filter(pk=obj.pk).update(job_value=Decimal("350.00"), outcome_at=timezone.now())
        return obj

    monkeypatch.setattr(CallAdmin, "get_object", job_value_saved_meanwhile)
    response = staff.post(change_url(routed_call), edit_post_data(page, outcome=""))

    assert response.status_code == 302
    routed_call.refresh_from_db()
    assert (routed_call.outcome, routed_call.job_value) == ("", Decimal("350.00"))
    assert routed_call.outcome_at is not None  # a job value recorded: not cleared


def test_an_outcome_saved_from_a_page_opened_before_another_staff_members_save_keeps_what_they_saved(
        staff, routed_call):
    """Two staff members open one call's page; one records the outcome and its job value, then the other, whose
    page still shows none, adds a note. The note is saved beside the other's outcome and job value: the page's
    old copy of the fields left alone is not a change (it overwrote them with nothing, silently)."""
    opened_first = staff.get(change_url(routed_call))
    opened_second = staff.get(change_url(routed_call))
    assert 'name="initial-job_value"' in opened_first.content.decode()  # the value shown, posted back
    assert staff.post(change_url(routed_call), edit_post_data(opened_second, outcome="booked", job_value="350.00")
                      ).status_code == 302

    response = staff.post(change_url(routed_call), edit_post_data(opened_first, outcome_note="Called back twice"))

    assert response.status_code == 302
    routed_call.refresh_from_db()
    assert (routed_call.outcome, routed_call.job_value, routed_call.outcome_note) == (
        "booked", Decimal("350.00"), "Called back twice")
    assert routed_call.outcome_at is not None


def test_a_field_both_staff_members_changed_is_refused_naming_it_with_nothing_written(staff, routed_call):
    """Both change the job value from pages opened before either saved: the second is refused on that field,
    with what it is now, and nothing of its post is written (not its outcome either); posted again from a
    page showing the first one's value, it is saved."""
    opened_first = staff.get(change_url(routed_call))
    opened_second = staff.get(change_url(routed_call))
    assert staff.post(change_url(routed_call), edit_post_data(opened_second, outcome="booked", job_value="350.00")
                      ).status_code == 302
    saved_at = Call.objects.get(pk=routed_call.pk).outcome_at

    response = staff.post(change_url(routed_call), edit_post_data(opened_first, outcome="paying_customer",
                                                                  job_value="900.00"))

    assert response.status_code == 200  # the form again, with the errors
    errors = response.context["adminform"].form.errors
    assert errors["job_value"] == ["Changed by someone else since this page was opened (now: 350.00). Nothing was "
                                   "saved: reload the page to see it, then make your change again."]
    assert errors["outcome"] == ["Changed by someone else since this page was opened (now: Booked). Nothing was "
                                 "saved: reload the page to see it, then make your change again."]
    routed_call.refresh_from_db()
    assert (routed_call.outcome, routed_call.job_value, routed_call.outcome_at) == ("booked", Decimal("350.00"),
                                                                                      saved_at)
    reloaded = staff.get(change_url(routed_call))
    assert staff.post(change_url(routed_call), edit_post_data(reloaded, outcome="paying_customer",
                                                              job_value="900.00")).status_code == 302
    routed_call.refresh_from_db()
    assert (routed_call.outcome, routed_call.job_value) == ("paying_customer", Decimal("900.00"))

