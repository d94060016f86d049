"""Qualification: every reason a call is not billable, and the money when it is."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given

from callbroker.core.model import CallFacts, Caller, Campaign, Reason
from callbroker.core.qualification import RULE_REASONS, qualify, qualify_and_explain, trace

try:
    from tests.core import strategies as cs
except ImportError:  # tests/core itself is on sys.path (pytest's default rootdir-less import mode)
    import strategies as cs  # type: ignore[no-redef]

STARTED = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
CAMPAIGN = Campaign(id=1, name="Austin plumbing", category="plumbing", payout=Decimal("20"))


def reference_reasons(campaign: Campaign, facts: CallFacts) -> set[Reason]:
    """The rules written out once more, as plainly as possible, to check ``qualify`` against."""
    reasons = set()
    number = facts.caller.number
    if not facts.connected:
        reasons.add(Reason.NOT_CONNECTED)
    needed = campaign.buffer_seconds
    if facts.target_min_talk_seconds is not None:
        needed = facts.target_min_talk_seconds
    if facts.connected and facts.talk_seconds < needed:
        reasons.add(Reason.BELOW_BUFFER)
    previous = facts.previous_billable_at
    if previous is not None and previous <= facts.started_at < previous + campaign.duplicate_window:
        reasons.add(Reason.DUPLICATE)
    if facts.in_area is False:
        reasons.add(Reason.OUT_OF_AREA)
    if facts.category_confirmed is False:
        reasons.add(Reason.WRONG_CATEGORY)
    if number is not None:
        if number in campaign.blocked_numbers:
            reasons.add(Reason.BLOCKED_NUMBER)
        for prefix in campaign.blocked_prefixes:
            if number.startswith(prefix):
                reasons.add(Reason.BLOCKED_NUMBER)
    else:
        reasons.add(Reason.ANONYMOUS_CALLER)
    verstat = facts.stir_verstat
    if verstat and verstat.startswith("TN-Validation-Failed"):
        reasons.add(Reason.FAILED_ATTESTATION)
    if campaign.require_attestation and (not verstat or verstat.startswith("No-TN-Validation")):
        reasons.add(Reason.FAILED_ATTESTATION)
    window_start = facts.started_at - campaign.velocity_window
    calls = 1
    for at in facts.recent_call_times:
        if window_start < at <= facts.started_at:
            calls += 1
    if calls > campaign.velocity_limit:
        reasons.add(Reason.CALLER_VELOCITY)
    return reasons


def facts(**fields) -> CallFacts:
    """A clean, billable call unless told otherwise."""
    fields.setdefault("caller", Caller("+15125550123", "78701"))
    fields.setdefault("connected", True)
    fields.setdefault("talk_seconds", 120)
    fields.setdefault("started_at", STARTED)
    fields.setdefault("target_price", Decimal("45"))
    return CallFacts(**fields)


def reasons(campaign: Campaign, **fields) -> tuple[Reason, ...]:
    return qualify(campaign, facts(**fields)).reasons


# --- properties -----------------------------------------------------------------------------------


@given(cs.qualification_cases())
def test_verdict_matches_the_reference_and_the_trace(case):
    campaign, call = case

    verdict = qualify(campaign, call)
    rows = trace(campaign, call)

    assert set(verdict.reasons) == reference_reasons(campaign, call)
    assert list(verdict.reasons) == [reason for reason in Reason if reason in verdict.reasons]  # enum order
    assert verdict.billable == (not verdict.reasons)
    assert [rule for rule, _, _ in rows] == list(RULE_REASONS)
    assert tuple(RULE_REASONS[rule] for rule, passed, _ in rows if not passed) == verdict.reasons
    assert all(sentence for _, _, sentence in rows)
    # The verdict kept with the sentences of its failed rules (``Call.reason_notes``): the trace's, one a reason.
    explained, sentences = qualify_and_explain(campaign, call)
    assert explained == verdict
    assert sentences == {RULE_REASONS[rule]: sentence for rule, passed, sentence in rows if not passed}
    for amount in (verdict.revenue, verdict.payout):
        assert isinstance(amount, Decimal)
        assert amount.as_tuple().exponent == -2
    if verdict.billable:
        assert verdict.revenue == call.target_price.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
        assert verdict.payout == campaign.payout.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    else:
        assert verdict.revenue == verdict.payout == Decimal("0.00")


# --- the rules, one example each ------------------------------------------------------------------


def test_clean_call_is_billable_with_money_in_cents():
    verdict = qualify(CAMPAIGN, facts(target_price=Decimal("45.005")))

    assert verdict.billable
    assert verdict.reasons == ()
    assert verdict.revenue == Decimal("45.01")
    assert verdict.payout == Decimal("20.00")


def test_a_call_that_never_connected_is_only_not_connected():
    verdict = qualify(CAMPAIGN, facts(connected=False, talk_seconds=0))

    assert verdict.reasons == (Reason.NOT_CONNECTED,)
    assert verdict.revenue == verdict.payout == Decimal("0.00")


def test_buffer_uses_the_targets_minimum_when_set():
    assert qualify(CAMPAIGN, facts(talk_seconds=59)).reasons == (Reason.BELOW_BUFFER,)
    assert qualify(CAMPAIGN, facts(talk_seconds=60)).billable
    assert qualify(CAMPAIGN, facts(talk_seconds=59, target_min_talk_seconds=30)).billable
    assert reasons(CAMPAIGN, talk_seconds=89, target_min_talk_seconds=90) == (Reason.BELOW_BUFFER,)


def test_duplicate_window_is_exclusive_at_its_end():
    window = CAMPAIGN.duplicate_window
    second = dt.timedelta(seconds=1)

    assert reasons(CAMPAIGN, previous_billable_at=STARTED - window + second) == (Reason.DUPLICATE,)
    assert reasons(CAMPAIGN, previous_billable_at=STARTED) == (Reason.DUPLICATE,)  # same start: 0 s before
    assert qualify(CAMPAIGN, facts(previous_billable_at=STARTED - window)).billable
    assert qualify(CAMPAIGN, facts(previous_billable_at=STARTED + dt.timedelta(minutes=1))).billable


def test_unknown_location_and_unasked_category_are_not_held_against_the_call():
    assert qualify(CAMPAIGN, facts(in_area=None, category_confirmed=None)).billable
    assert qualify(CAMPAIGN, facts(in_area=False, category_confirmed=False)).reasons == (
        Reason.OUT_OF_AREA,
        Reason.WRONG_CATEGORY,
    )


def test_blocked_and_anonymous_numbers():
    campaign = Campaign(
        id=1, name="c", blocked_numbers=frozenset({"+15125550123"}), blocked_prefixes=("+1900",)
    )

    assert qualify(campaign, facts()).reasons == (Reason.BLOCKED_NUMBER,)
    assert qualify(campaign, facts(caller=Caller("+19005550000"))).reasons == (Reason.BLOCKED_NUMBER,)
    assert qualify(campaign, facts(caller=Caller(None))).reasons == (Reason.ANONYMOUS_CALLER,)


def test_failed_attestation_always_counts_missing_only_when_required():
    strict = Campaign(id=1, name="c", require_attestation=True)

    assert reasons(CAMPAIGN, stir_verstat="TN-Validation-Failed-B") == (Reason.FAILED_ATTESTATION,)
    assert qualify(CAMPAIGN, facts(stir_verstat="No-TN-Validation")).billable
    assert qualify(CAMPAIGN, facts(stir_verstat=None)).billable
    assert qualify(strict, facts(stir_verstat="No-TN-Validation")).reasons == (Reason.FAILED_ATTESTATION,)
    assert qualify(strict, facts(stir_verstat=None)).reasons == (Reason.FAILED_ATTESTATION,)
    assert qualify(strict, facts(stir_verstat="TN-Validation-Passed-C")).billable


def test_velocity_counts_this_call_and_recent_ones_inside_the_window():
    campaign = Campaign(id=1, name="c", velocity_limit=3, velocity_window=dt.timedelta(minutes=10))
    two_recent = (STARTED - dt.timedelta(minutes=1), STARTED - dt.timedelta(minutes=9))
    three_recent = (*two_recent, STARTED - dt.timedelta(minutes=5))
    at_the_edge = (*two_recent, STARTED - dt.timedelta(minutes=10))

    assert qualify(campaign, facts(recent_call_times=two_recent)).billable  # 3 calls: not more than 3
    assert qualify(campaign, facts(recent_call_times=three_recent)).reasons == (Reason.CALLER_VELOCITY,)
    assert qualify(campaign, facts(recent_call_times=at_the_edge)).billable


def test_every_reason_at_once_in_declared_order():
    campaign = Campaign(id=1, name="c", velocity_limit=0, require_attestation=True)
    call = facts(
        caller=Caller(None),
        connected=False,
        talk_seconds=0,
        in_area=False,
        category_confirmed=False,
        previous_billable_at=STARTED - dt.timedelta(days=1),
    )

    assert qualify(campaign, call).reasons == (
        Reason.NOT_CONNECTED,
        Reason.DUPLICATE,
        Reason.OUT_OF_AREA,
        Reason.WRONG_CATEGORY,
        Reason.ANONYMOUS_CALLER,
        Reason.FAILED_ATTESTATION,
        Reason.CALLER_VELOCITY,
    )


def test_trace_speaks_plainly():
    rows = {rule: (passed, sentence) for rule, passed, sentence in trace(CAMPAIGN, facts(talk_seconds=42))}

    assert rows["buffer"] == (False, "talked 42 s with the buyer; 60 s needed")
    assert rows["connected"] == (True, "the caller was connected to the buyer")
    assert rows["area"] == (True, "caller location unknown; not held against the call")
