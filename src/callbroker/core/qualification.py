"""Qualification: is a finished call billable, and if not, every reason why.

:func:`qualify` gives the verdict the ledger stores; :func:`trace` gives the same rules as plain
sentences, one per rule, for the per-call qualification trace buyers and publishers see ("why didn't
my call convert?"). Both come from one list of checks, so they can never disagree: the rules that
fail in the trace are exactly the verdict's reasons.

The rules, in the order of :class:`~callbroker.core.model.Reason`:

* ``NOT_CONNECTED``       the caller was never bridged to a buyer;
* ``BELOW_BUFFER``        connected, but bridged talk time is below the buffer (the target's
                          ``min_talk_seconds`` when set, else the campaign's ``buffer_seconds``);
                          a call that never connected is not also flagged here;
* ``DUPLICATE``           the same caller had a billable call on this campaign that started less than
                          ``duplicate_window`` before this call started (start to start: how long
                          a call lasts moves no window);
* ``OUT_OF_AREA``         the caller is known to be outside the target's area (unknown is not held
                          against the call);
* ``WRONG_CATEGORY``      the caller said in the IVR that they want something else;
* ``BLOCKED_NUMBER``      the number is on the campaign's block list or starts with a blocked prefix;
* ``ANONYMOUS_CALLER``    no usable caller number;
* ``FAILED_ATTESTATION``  STIR/SHAKEN verification failed (always: that is spoofing); when the
                          campaign requires attestation, also no verification or no verstat at all;
* ``CALLER_VELOCITY``     this call plus the caller's calls started within ``velocity_window`` before
                          it started exceed ``velocity_limit``.

A billable call earns the target's price (revenue) and the campaign's payout; otherwise both are 0.00.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from callbroker.core.model import CallFacts, Campaign, Reason, Verdict
from callbroker.core.money import ZERO, to_money

__all__ = ["NEVER_CONNECTED", "RULE_REASONS", "qualify", "qualify_and_explain", "trace"]

FAILED_VERSTAT_PREFIX = "TN-Validation-Failed"
NO_VALIDATION_VERSTAT = "No-TN-Validation"
#: The trace's sentence of a call never connected to a buyer: also said of a call no campaign judges (a call to
#: a number that is no tracking number), which is not billable for that reason alone.
NEVER_CONNECTED = "the caller was never connected to a buyer"

# The trace's rule names, in order, with the reason each records when it fails.
RULE_REASONS: dict[str, Reason] = {
    "connected": Reason.NOT_CONNECTED,
    "buffer": Reason.BELOW_BUFFER,
    "duplicate": Reason.DUPLICATE,
    "area": Reason.OUT_OF_AREA,
    "category": Reason.WRONG_CATEGORY,
    "blocked": Reason.BLOCKED_NUMBER,
    "anonymous": Reason.ANONYMOUS_CALLER,
    "attestation": Reason.FAILED_ATTESTATION,
    "velocity": Reason.CALLER_VELOCITY,
}


class _Check(NamedTuple):
    rule: str  # short, stable name shown in the trace
    reason: Reason  # the reason recorded when the rule fails
    passed: bool
    sentence: str


def qualify(campaign: Campaign, facts: CallFacts) -> Verdict:
    """The verdict for one finished call: every failed rule, and the money when none failed."""
    return _verdict(campaign, facts, _checks(campaign, facts))


def qualify_and_explain(campaign: Campaign, facts: CallFacts) -> tuple[Verdict, dict[Reason, str]]:
    """The verdict (as :func:`qualify`) and the trace's sentence of each rule that failed, by its reason.

    Why: the sentence names the figures the call was judged by ("talked 29 s with the buyer; 30 s needed
    (this buyer's own minimum)"), which the rules as they are later no longer give (a buffer changed since);
    it is kept with the verdict, from the same checks in the same pass (no second judgement)."""
    checks = _checks(campaign, facts)
    return _verdict(campaign, facts, checks), {check.reason: check.sentence for check in checks if not check.passed}


def _verdict(campaign: Campaign, facts: CallFacts, checks: list[_Check]) -> Verdict:
    reasons = tuple(check.reason for check in checks if not check.passed)
    billable = not reasons
    return Verdict(
        billable=billable,
        reasons=reasons,
        revenue=to_money(facts.target_price) if billable else ZERO,
        payout=to_money(campaign.payout) if billable else ZERO,
    )


def trace(campaign: Campaign, facts: CallFacts) -> list[tuple[str, bool, str]]:
    """Every rule checked, in ``Reason`` order, as ``(rule, passed, sentence)``.

    Rules: connected, buffer, duplicate, area, category, blocked, anonymous, attestation, velocity.
    The failed rows are exactly ``qualify(...).reasons``. A rule that does not apply (talk time of
    a call that never connected, the area of a caller whose location is unknown) is listed as
    passed, with a sentence saying why it did not count against the call.
    """
    return [(check.rule, check.passed, check.sentence) for check in _checks(campaign, facts)]


def _checks(campaign: Campaign, facts: CallFacts) -> list[_Check]:
    """All rules in ``Reason`` order. The single place the qualification rules live."""
    caller = facts.caller
    number = caller.number
    started_at = facts.started_at
    checks: list[_Check] = []

    def add(rule: str, reason: Reason, passed: bool, sentence: str) -> None:
        checks.append(_Check(rule, reason, passed, sentence))

    # NOT_CONNECTED
    if facts.connected:
        add("connected", Reason.NOT_CONNECTED, True, "the caller was connected to the buyer")
    else:
        add("connected", Reason.NOT_CONNECTED, False, NEVER_CONNECTED)

    # BELOW_BUFFER: bridged talk time only; a call that never connected is not also flagged here.
    if facts.target_min_talk_seconds is not None:
        buffer, whose = facts.target_min_talk_seconds, " (this buyer's own minimum)"
    else:
        buffer, whose = campaign.buffer_seconds, ""
    if not facts.connected:
        add("buffer", Reason.BELOW_BUFFER, True, "talk time not counted: the call never connected")
    else:
        talked = facts.talk_seconds
        add("buffer", Reason.BELOW_BUFFER, talked >= buffer,
            f"talked {talked} s with the buyer; {buffer} s needed{whose}")

    # DUPLICATE
    previous = facts.previous_billable_at
    window = campaign.duplicate_window
    if previous is None:
        add("duplicate", Reason.DUPLICATE, True, "no earlier billable call from this caller on this campaign")
    elif previous > started_at:
        add("duplicate", Reason.DUPLICATE, True,
            "the earlier billable call started after this call did; not a repeat")
    else:
        since = started_at - previous
        repeat = since < window
        add("duplicate", Reason.DUPLICATE, not repeat,
            f"last billable call from this caller was {_duration(since)} earlier"
            f"{_RULE_AFTER[Reason.DUPLICATE]}{'inside' if repeat else 'outside'} the {_duration(window)} "
            "duplicate window")

    # OUT_OF_AREA: an unknown location is not held against the call.
    where = f" (ZIP {caller.zip_code})" if caller.zip_code else ""
    if facts.in_area is None:
        add("area", Reason.OUT_OF_AREA, True, "caller location unknown; not held against the call")
    elif facts.in_area:
        add("area", Reason.OUT_OF_AREA, True, f"caller is inside the service area{where}")
    else:
        add("area", Reason.OUT_OF_AREA, False, f"caller is outside the service area{where}")

    # WRONG_CATEGORY
    service = campaign.category or "this service"
    if facts.category_confirmed is None:
        add("category", Reason.WRONG_CATEGORY, True, "the caller was not asked to confirm the service")
    elif facts.category_confirmed:
        add("category", Reason.WRONG_CATEGORY, True, f"the caller confirmed they need {service}")
    else:
        add("category", Reason.WRONG_CATEGORY, False, f"the caller said they do not need {service}")

    # BLOCKED_NUMBER
    if number is None:
        add("blocked", Reason.BLOCKED_NUMBER, True, "no caller number to check against the block list")
    elif number in campaign.blocked_numbers:
        add("blocked", Reason.BLOCKED_NUMBER, False, f"{number} is on the campaign's block list")
    else:
        prefix = next((p for p in campaign.blocked_prefixes if number.startswith(p)), None)
        if prefix is None:
            add("blocked", Reason.BLOCKED_NUMBER, True, f"{number} is not blocked")
        else:
            add("blocked", Reason.BLOCKED_NUMBER, False, f"{number} starts with the blocked prefix {prefix}")

    # ANONYMOUS_CALLER
    if number is None:
        add("anonymous", Reason.ANONYMOUS_CALLER, False, "the caller's number was withheld or invalid")
    else:
        add("anonymous", Reason.ANONYMOUS_CALLER, True, "the caller's number is known")

    # FAILED_ATTESTATION: a failed verification is spoofing, whatever the campaign says.
    verstat = facts.stir_verstat or None  # "" is as missing as None
    if verstat is not None and verstat.startswith(FAILED_VERSTAT_PREFIX):
        add("attestation", Reason.FAILED_ATTESTATION, False,
            f"caller ID verification failed ({verstat}): the number may be spoofed")
    elif campaign.require_attestation and (verstat is None or verstat.startswith(NO_VALIDATION_VERSTAT)):
        add("attestation", Reason.FAILED_ATTESTATION, False,
            f"the campaign requires verified caller ID; the carrier gave {verstat or 'no result'}")
    else:
        add("attestation", Reason.FAILED_ATTESTATION, True,
            f"caller ID check: {verstat or 'no verification result'}")

    # CALLER_VELOCITY: this call plus the caller's calls started inside the window before it started.
    span = campaign.velocity_window
    calls = 1 + sum(1 for at in facts.recent_call_times if at <= started_at and started_at - at < span)
    add("velocity", Reason.CALLER_VELOCITY, calls <= campaign.velocity_limit,
        f"{calls} call{'' if calls == 1 else 's'} from this caller{_RULE_AFTER[Reason.CALLER_VELOCITY]}"
        f"{_duration(span)}; "
        f"more than {campaign.velocity_limit} is treated as spam")
    return checks


#: Where a duplicate or velocity sentence passes from what the caller's other calls are (the last billable
#: call's distance, how many calls) to the campaign's rule they are weighed against (window, limit).
_RULE_AFTER = {Reason.DUPLICATE: ", ", Reason.CALLER_VELOCITY: " within "}


def history_facts(reason: Reason, sentence: str) -> str:
    """What a duplicate or velocity sentence says of the caller's other calls, without the campaign's rule
    (``"last billable call from this caller was 20 min earlier"``, ``"4 calls from this caller"``).

    Why: a call judged again when its caller's other calls change keeps its verdict when its reasons come
    out as they were, and its sentence is renewed only when these facts changed (the billable call it now
    repeats). Its kept sentence names the rule it was judged by: a window or limit changed since is no reason
    to rewrite it, through an unrelated call's end."""
    return sentence.split(_RULE_AFTER[reason], 1)[0]


def _duration(delta: dt.timedelta) -> str:
    """A short human duration: "45 s", "12 min", "3 h", "30 days", "1 day 2 h"."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "-" + _duration(-delta)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if hours:
        parts.append(f"{hours} h")
    if minutes and not days:
        parts.append(f"{minutes} min")
    if secs and not days and not hours:
        parts.append(f"{secs} s")
    return " ".join(parts) if parts else "0 s"
