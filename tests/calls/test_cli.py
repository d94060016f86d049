"""``callbroker calls list|show`` and the presenters behind it (call_to_dict, summary and detail text)."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from callbroker.calls.models import Call
from callbroker.calls.presenters import (
    AUTO_PAUSED_LABEL,
    EXCLUSION_LABELS,
    REASON_LABELS,
    call_summary_line,
    call_to_dict,
    decision_passes,
    money_str,
    money_text,
    with_related,
)
from callbroker.core.model import Exclusion, Reason

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("calls", *args, stdout=out)
    return out.getvalue()


def loaded(call: Call) -> Call:
    return with_related(Call.objects.filter(pk=call.pk)).get()


# ---- presenters ----------------------------------------------------------------------------------


def test_every_exclusion_and_reason_code_has_a_label():
    assert set(EXCLUSION_LABELS) == {str(code) for code in Exclusion}
    assert set(REASON_LABELS) == {str(code) for code in Reason}
    labels = [*EXCLUSION_LABELS.values(), *REASON_LABELS.values()]
    assert all(isinstance(label, str) and label for label in labels)


def test_call_to_dict_has_decision_with_labels_attempts_in_order_and_money_as_strings(routed_call):
    # given a routed, billable call
    targets = routed_call.targets
    # when
    data = call_to_dict(loaded(routed_call))
    # then
    assert data["sid"] == routed_call.call_sid
    assert data["started_at"] == "2026-11-27T14:03:12Z"
    assert data["tracking_number"] == {"number": "+15124440001", "label": "Google Ads", "known": True}
    assert data["campaign"]["key"] == "austin-plumbing"
    assert data["campaign"]["name"] == "Austin Plumbing"
    assert data["caller"]["zip"] == "78704"
    assert data["caller"]["zip_source"] == "ivr"
    assert data["caller"]["stir_verstat"] == "TN-Validation-Passed-A"
    assert data["revenue"] == "45.00" and data["payout"] == "20.00"
    assert data["verdict"] == "billable" and data["reasons"] == []
    assert data["connected_target"]["name"] == "ACME Plumbing / Main line"
    assert data["buyer"]["key"] == "acme"
    assert data["talk_seconds"] == 151

    decision = data["decision"]
    assert [entry["id"] for entry in decision["ring"]] == [targets["night"].pk, targets["main"].pk]
    assert decision["ring"][1]["name"] == "ACME Plumbing / Main line"
    assert decision["excluded"] == [
        {"id": targets["closed"].pk, "name": "Bob's Pipes / Day line", "code": "closed",
         "label": EXCLUSION_LABELS["closed"], "auto_paused": False},
        {"id": targets["capped"].pk, "name": "ACME Plumbing / South", "code": "daily_cap",
         "label": "daily cap reached", "auto_paused": False},
    ]
    assert decision["refused_at_dial"] == []
    assert len(decision["passes"]) == 1

    assert [a["sequence"] for a in data["attempts"]] == [1, 2]
    assert [a["result"] for a in data["attempts"]] == ["no-answer", "bridged"]
    assert data["attempts"][1]["talk_seconds"] == 151
    assert data["attempts"][0]["target"]["name"] == "Bob's Pipes / Night line"
    assert "events" not in data

    json.dumps(data)  # plain data: no Decimal, no datetime


def test_call_to_dict_with_events_lists_the_carrier_webhooks(routed_call):
    data = call_to_dict(loaded(routed_call), with_events=True)

    assert [e["kind"] for e in data["events"]] == ["voice", "status"]
    assert data["events"][1]["params"]["CallStatus"] == "completed"
    assert data["events"][0]["received_at"].endswith("Z")


def test_not_billable_reasons_carry_labels(make_call):
    call = make_call(verdict="not_billable", reason_codes=["below_buffer", "duplicate"])

    data = call_to_dict(loaded(call))

    assert data["reasons"] == [
        {"code": "below_buffer", "label": REASON_LABELS["below_buffer"]},
        {"code": "duplicate", "label": REASON_LABELS["duplicate"]},
    ]
    assert data["revenue"] == "0.00"
    assert data["decision"] is None


def test_several_routing_passes_are_all_kept_and_the_last_one_is_current(make_target, make_call):
    first, second = make_target(name="First"), make_target(name="Second")
    passes = [
        {"ring": [first.pk], "excluded": [], "sticky": True, "fallback": None, "at": "2026-11-27T14:00:00Z"},
        {"ring": [second.pk], "excluded": [[first.pk, "concurrency_full"]], "sticky": False, "fallback": None,
         "at": "2026-11-27T14:00:40Z"},
    ]
    call = make_call(decision={"passes": passes})

    data = call_to_dict(loaded(call))

    # names looked up when the decision stored none
    assert data["decision"]["ring"] == [{"id": second.pk, "name": str(second)}]
    assert data["decision"]["excluded"][0]["code"] == "concurrency_full"
    assert [p["at"] for p in data["decision"]["passes"]] == ["2026-11-27T14:00:00Z", "2026-11-27T14:00:40Z"]
    assert data["decision"]["passes"][0]["sticky"] is True


def test_deleted_target_in_a_decision_is_shown_by_id(make_call):
    call = make_call(decision={"ring": [], "excluded": [[999, "paused"]], "fallback": None})

    [routing] = decision_passes(call)

    assert routing["excluded"] == [
        {"id": 999, "name": "#999", "code": "paused", "label": "paused", "auto_paused": False}]


def test_a_call_whose_target_was_deleted_still_shows_its_buyer_and_talk_time(routed_call):
    routed_call.targets["main"].delete()  # the connected target (SET NULL on the call and its attempt)
    call = loaded(routed_call)
    assert call.connected_target_id is None and call.buyer is not None

    assert call_summary_line(call).split("  ")[5:7] == ["→ ACME Plumbing / (deleted target)", "talked 2:31"]
    listed = run("list")
    assert "ACME Plumbing / (deleted target)" in listed and "2:31" in listed.splitlines()[1]
    shown = run("show", call.call_sid)
    assert "Result       ACME Plumbing / (deleted target)" in shown
    assert "Talk time    2:31 (151 s bridged)" in shown
    assert "ACME Plumbing / (deleted target)  +1512555" in shown  # its attempt, by buyer

    call.buyer.delete()  # the buyer too: the talk time is still the call's
    call = loaded(routed_call)
    assert call_summary_line(call).split("  ")[5:7] == ["→ (deleted buyer)", "talked 2:31"]


def test_auto_paused_targets_and_refusals_at_dial_time_are_explained(make_target, make_call):
    # given a target auto-paused by missed-call protection and one refused when its turn came
    missed, full, ok = make_target(name="Missed"), make_target(name="Full"), make_target(name="Ok")
    call = make_call(decision={
        "ring": [full.pk, ok.pk], "excluded": [[missed.pk, "paused"]], "auto_paused": [missed.pk],
        "refused_at_dial": [[full.pk, "concurrency_full"]], "fallback": None,
        "at": "2026-11-27T14:03:20.123456+00:00",
    })

    # when
    [routing] = decision_passes(call)
    out = run("show", call.call_sid)

    # then
    assert routing["excluded"][0]["auto_paused"] is True
    assert routing["excluded"][0]["label"] == AUTO_PAUSED_LABEL
    assert routing["refused_at_dial"] == [{"id": full.pk, "name": str(full), "code": "concurrency_full",
                                           "label": EXCLUSION_LABELS["concurrency_full"]}]
    assert f"{missed} [#{missed.pk}]: {AUTO_PAUSED_LABEL} (paused)" in out
    assert "Skipped when their turn came:" in out and f"{full} [#{full.pk}]: concurrency limit reached" in out
    assert "Decided at 2026-11-27 14:03:20 for ZIP unknown" in out


def test_summary_line_billable(routed_call):
    line = call_summary_line(loaded(routed_call))

    assert line == ("14:03:12  CA01234567  +15124440001 Austin Plumbing  from +15125550001  ZIP 78704 (ivr)  "
                    "→ ACME Plumbing / Main line  talked 2:31  BILLABLE $45.00")


def test_summary_line_not_billable(make_campaign, make_target, make_call):
    campaign = make_campaign(name="Austin Plumbing")
    target = make_target(campaign=campaign)
    call = make_call(
        campaign=campaign, caller_zip="78701", zip_source="carrier", verdict="not_billable",
        reason_codes=["below_buffer", "duplicate"],
        attempts=[{"target": target, "result": "bridged", "talk_seconds": 40}],
    )

    line = call_summary_line(loaded(call))

    assert "ZIP 78701 (carrier)" in line
    assert f"→ {target}  talked 0:40" in line
    assert line.endswith("NOT BILLABLE: below_buffer, duplicate")


def test_summary_line_fallback(make_call):
    call = make_call(
        caller_number="", caller_status="anonymous", fallback_applied="message", verdict="not_billable",
        reason_codes=["not_connected"],
        decision={"ring": [], "excluded": [],
                  "fallback": {"kind": "message", "number": None, "message": "Closed"}},
    )

    line = call_summary_line(loaded(call))

    assert "anonymous  " in line
    assert "ZIP ?" in line
    assert "→ fallback: message" in line
    assert "talked" not in line
    assert line.endswith("NOT BILLABLE: not_connected")


def test_summary_line_no_answer(make_target, make_call):
    targets = [make_target() for _ in range(3)]
    call = make_call(attempts=[{"target": t, "result": "no-answer", "ring_seconds": 30} for t in targets],
                     verdict="not_billable", reason_codes=["not_connected"])

    assert "→ no answer (3 tried)  NOT BILLABLE: not_connected" in call_summary_line(loaded(call))


def test_summary_line_no_answer_then_fallback(make_target, make_call):
    call = make_call(attempts=[{"target": make_target(), "result": "no-answer"}], fallback_applied="voicemail",
                     verdict="not_billable", reason_codes=["not_connected"])

    assert "→ no answer (1 tried), fallback: voicemail" in call_summary_line(loaded(call))


def test_summary_line_says_what_each_buyer_did(make_target, make_call):
    """A leg answered but not bridged (the whisper declined) is not "no answer"; each result once, in order."""
    call = make_call(attempts=[{"target": make_target(), "result": r} for r in ("no-answer", "declined", "no-answer",
                                                                                "busy")],
                     fallback_applied="voicemail", verdict="not_billable", reason_codes=["not_connected"])

    assert "→ no answer, declined, busy (4 tried), fallback: voicemail" in call_summary_line(loaded(call))


def test_summary_line_of_an_unknown_number(make_call):
    call = make_call(to_number="+15125559876", fallback_applied="unknown_number", verdict="not_billable",
                     reason_codes=["not_connected"])
    Call.objects.filter(pk=call.pk).update(campaign=None, tracking_number=None, publisher=None)

    assert "  +15125559876 no campaign  from " in call_summary_line(loaded(call))


def test_summary_line_live_call_is_pending(make_call):
    call = make_call(stage="ivr")

    line = call_summary_line(loaded(call))

    assert "→ in IVR" in line and line.endswith("PENDING")


def test_money_is_a_two_place_string_and_dollars_for_people():
    assert money_str(Decimal("45")) == "45.00"
    assert money_str(None) is None
    assert money_text(Decimal("1250")) == "$1,250.00"
    assert money_text(None) == "—"


# ---- calls list ----------------------------------------------------------------------------------


@pytest.fixture
def three_calls(make_campaign, make_call):
    plumbing = make_campaign(key="plumbing", name="Plumbing")
    roofing = make_campaign(key="roofing", name="Roofing")
    def day(month: int, day: int) -> dt.datetime:
        return dt.datetime(2026, month, day, 9, tzinfo=dt.UTC)

    make_call(call_sid="CA-old", campaign=plumbing, started_at=day(10, 30), verdict="billable",
              revenue=Decimal("45"))
    make_call(call_sid="CA-plumbing", campaign=plumbing, started_at=day(11, 2), verdict="not_billable",
              reason_codes=["below_buffer"])
    make_call(call_sid="CA-roofing", campaign=roofing, started_at=day(11, 3))


def test_list_shows_a_table_newest_first(three_calls):
    out = run("list")

    lines = out.splitlines()
    assert lines[0].startswith("TIME (UTC)")
    assert [line.split()[2] for line in lines[1:]] == ["CA-roofing", "CA-plumbing", "CA-old"]
    assert "not billable: below_buffer" in out


def test_list_says_where_every_zip_came_from_in_full(make_call):
    for source in ("ivr", "carrier", "area_code"):
        make_call(caller_zip="78660", zip_source=source)

    out = run("list")

    for source in ("ivr", "carrier", "area_code"):
        assert f" 78660 ({source}) " in out


def test_list_filters_by_campaign_verdict_since_and_limit(three_calls):
    assert "CA-roofing" not in run("list", "--campaign", "plumbing")
    assert "CA-plumbing" in run("list", "--campaign", "plumbing")
    assert [c["sid"] for c in json.loads(run("list", "--verdict", "billable", "--json"))] == ["CA-old"]
    assert [c["sid"] for c in json.loads(run("list", "--since", "2026-11-01", "--json"))] == [
        "CA-roofing", "CA-plumbing"]
    assert [c["sid"] for c in json.loads(run("list", "--limit", "1", "--json"))] == ["CA-roofing"]
    assert [c["sid"] for c in json.loads(run("list", "--limit", "0", "--json"))] == [
        "CA-roofing", "CA-plumbing", "CA-old"]


def test_list_json_has_the_call_fields_without_events(routed_call):
    [data] = json.loads(run("list", "--json"))

    assert data["sid"] == routed_call.call_sid
    assert data["revenue"] == "45.00"
    assert {"campaign", "publisher", "caller", "decision", "attempts", "verdict", "reasons"} <= set(data)
    assert "events" not in data


def test_list_reads_a_fixed_number_of_queries(routed_call, make_call, django_assert_num_queries):
    # given one call: count the queries; then four more calls of the same shape
    with django_assert_num_queries(2):  # calls with their rows, attempts with theirs
        run("list", "--json")
    for _ in range(4):
        make_call(decision=routed_call.decision, attempts=[{"target": routed_call.targets["main"],
                                                           "result": "bridged", "talk_seconds": 70}])
    # then the same number of queries
    with django_assert_num_queries(2):
        output = run("list", "--json")
    assert len(json.loads(output)) == 5


def test_calls_show_the_currency_they_were_charged_in(routed_call, make_call, django_assert_num_queries):
    from callbroker.billing.models import LedgerEntry

    LedgerEntry.objects.create(call=routed_call, call_sid=routed_call.call_sid, kind="charge", generation=1,
                               amount=routed_call.revenue, campaign=routed_call.campaign, currency="USD",
                               memo="billable call")
    routed_call.campaign.currency = "EUR"  # changed after the call was charged
    routed_call.campaign.save()
    unposted = make_call(campaign=routed_call.campaign, verdict="billable", revenue=Decimal("30.00"))

    with django_assert_num_queries(2):  # no query per call for the currency
        listed = {c["sid"]: c["currency"] for c in json.loads(run("list", "--json"))}
    assert listed == {routed_call.call_sid: "USD", unposted.call_sid: "EUR"}
    assert "Revenue      $45.00" in run("show", routed_call.call_sid)
    assert call_to_dict(Call.objects.get(pk=routed_call.pk))["currency"] == "USD"  # loaded without with_related


def test_list_with_nothing_to_show(db):
    assert run("list") == "No calls match.\n"
    assert json.loads(run("list", "--json")) == []


def test_list_rejects_bad_arguments(three_calls):
    with pytest.raises(CommandError, match="No campaign"):
        run("list", "--campaign", "nope")
    with pytest.raises(CommandError, match="--since"):
        run("list", "--since", "yesterday")
    with pytest.raises(CommandError, match="--since"):
        run("list", "--since", "2026-13-01")
    for edge in ("0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00"):  # no UTC moment: refused, no traceback
        with pytest.raises(CommandError, match="out of the range of dates"):
            run("list", "--since", edge)
    with pytest.raises(CommandError):
        run("list", "--verdict", "maybe")
    with pytest.raises(CommandError, match="--limit"):
        run("list", "--limit", "-1")


def test_list_refuses_an_empty_campaign_or_date_instead_of_listing_every_call(three_calls):
    with pytest.raises(CommandError) as empty_campaign:
        run("list", "--campaign", "")
    assert str(empty_campaign.value) == "--campaign: give the campaign's key (it is empty)."
    with pytest.raises(CommandError, match="--campaign: give the campaign's key"):
        run("list", "--campaign", "  ")
    with pytest.raises(CommandError) as empty_since:
        run("list", "--since", "")
    assert str(empty_since.value) == "--since '': use a date (2026-11-01) or an ISO date-time"


# ---- calls show ----------------------------------------------------------------------------------


def test_show_prints_attempts_exclusions_and_verdict(routed_call):
    out = run("show", routed_call.call_sid)

    assert out.startswith(f"Call {routed_call.call_sid}")
    for section in ("Caller", "Routing", "Attempts", "Qualification", "Outcome"):
        assert f"\n{section}\n" in out
    assert "Campaign     Austin Plumbing (austin-plumbing)" in out
    assert "1. Bob's Pipes / Night line" in out
    assert f"- Bob's Pipes / Day line [#{routed_call.targets['closed'].pk}]: closed (closed)" in out
    assert "- ACME Plumbing / South" in out and "daily cap reached (daily_cap)" in out
    assert "Connected" in out and "No answer" in out
    assert "Verdict      Billable" in out
    assert "Revenue      $45.00" in out
    assert "Events" not in out


def test_show_prints_an_outcome_and_a_note_recorded_without_choosing_one(routed_call):
    Call.objects.filter(pk=routed_call.pk).update(outcome="booked", job_value=Decimal("350.00"),
                                                  outcome_at=dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC))
    out = run("show", routed_call.call_sid)
    assert "\nOutcome\n  Booked, job value $350.00 (recorded 2026-11-28 09:00:00)\n" in out
    # Staff wrote a note (or a job value) and left the outcome unchosen: it said "Not recorded (recorded …)".
    Call.objects.filter(pk=routed_call.pk).update(outcome="", job_value=None,
                                                  outcome_note="Called back, no answer")
    out = run("show", routed_call.call_sid)
    assert ("\nOutcome\n  No outcome chosen (recorded 2026-11-28 09:00:00)\n"
            "  Note: Called back, no answer") in out


def test_show_prints_reasons_not_billable(make_call):
    call = make_call(verdict="not_billable", reason_codes=["below_buffer", "out_of_area"])

    out = run("show", call.call_sid)

    assert f"- below_buffer: {REASON_LABELS['below_buffer']}" in out
    assert f"- out_of_area: {REASON_LABELS['out_of_area']}" in out


def test_show_with_events(routed_call):
    out = run("show", routed_call.call_sid, "--events")

    assert "\nEvents\n" in out
    assert '"CallStatus": "completed"' in out


def test_show_json(routed_call):
    data = json.loads(run("show", routed_call.call_sid, "--json", "--events"))

    assert data["sid"] == routed_call.call_sid
    assert data["decision"]["excluded"][0]["code"] == "closed"
    assert len(data["events"]) == 2


def test_show_unknown_call_sid_is_an_error(db):
    with pytest.raises(CommandError, match="No call with CallSid 'CAnope'"):
        run("show", "CAnope")


def test_show_refuses_an_empty_call_sid_naming_it(make_call):
    make_call()

    with pytest.raises(CommandError) as empty:
        run("show", " ")
    assert str(empty.value) == "CALLSID: give a CallSid or its start (it is empty)."


def test_show_takes_the_start_of_a_call_sid_as_the_live_view_prints_it(make_call):
    one = make_call(call_sid="CA1f2e3d4c" + "0" * 24)
    make_call(call_sid="CA99990000" + "0" * 24)
    make_call(call_sid="CA99991111" + "0" * 24)

    assert run("show", "CA1f2e3d4c").startswith(f"Call {one.call_sid}")
    assert json.loads(run("show", "CA1f2e", "--json"))["sid"] == one.call_sid
    with pytest.raises(CommandError, match="More than one call's CallSid starts with 'CA9999'"):
        run("show", "CA9999")
    with pytest.raises(CommandError, match=r"No call with CallSid 'CA1f2' \(the start of a CallSid must be 6 "):
        run("show", "CA1f2")


def test_list_shows_where_a_call_went_in_full_and_keeps_the_columns_aligned(make_buyer, make_target, make_call):
    """ROUTED TO was cut at 32 characters: "Northwest Emergency Plumbing / …", the line the caller talked on
    hidden behind a long buyer's name. It is as wide as its longest value; the columns after it still
    line up."""
    buyer = make_buyer(name="Northwest Emergency Plumbing and Drain Services")
    line = make_target(buyer=buyer, name="After-hours overflow line")
    make_call(call_sid="CA-long", attempts=[{"target": line, "result": "bridged"}], talk_seconds=95,
              verdict="billable", revenue=Decimal("45.00"))
    make_call(call_sid="CA-short", verdict="not_billable", reason_codes=["not_connected"])

    header, *rows = run("list").splitlines()
    long_row, short_row = (next(row for row in rows if sid in row) for sid in ("CA-long ", "CA-short "))

    routed = "Northwest Emergency Plumbing and Drain Services / After-hours overflow line"
    assert f"  {routed}  1:35" in long_row
    talk = header.index("TALK")
    assert long_row.index("1:35") == talk and short_row.index("—", header.index("ROUTED TO") + 10) == talk
    assert header.index("VERDICT") == long_row.index("billable") == short_row.index("not billable")
