"""``callbroker calls list|show``: look at calls from the terminal, as a table, as text or as JSON;
``calls close-abandoned`` and ``calls judge``: the two things done to calls by hand."""

from __future__ import annotations

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import OperationalError, ProgrammingError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from callbroker.calls.choices import Verdict
from callbroker.calls.models import Call
from callbroker.calls.presenters import (
    call_detail_lines,
    call_to_dict,
    caller_text,
    format_seconds,
    routed_text,
    was_connected,
    with_related,
)
from callbroker.calls.staff import FROM_THE_CLI, NOTE_MAX, NotJudged, clean_note, judge_not_billable
from callbroker.core.model import Reason
from callbroker.network.models import Campaign
from callbroker.ops.commands import reading_the_database
from callbroker.words import counted

# (header, width) of the list table; the last column takes the rest of the line.
_COLUMNS = (
    ("TIME", 19),
    ("CALLSID", 36),
    ("NUMBER", 14),
    ("CAMPAIGN", 22),
    ("CALLER", 14),
    ("ZIP", 17),  # "78660 (area_code)" whole: cut to "78660 (area_co…" it hid where the ZIP came from
    ("ROUTED TO", 32),
    ("TALK", 7),
    ("VERDICT", 0),
)
#: Columns never cut: as wide as their longest value in the listing (at least their width above). ROUTED TO
#: cut at 32 characters hid what matters in it: the target after a long buyer's name ("ACME Plumbing and
#: Drain Services / Ma…"), the fallback after the buyers rung ("no answer, declined (3 tried), fallb…").
_WHOLE = frozenset({"ROUTED TO"})


#: ``calls show`` takes the start of a CallSid this long or longer ("CA" and 4 hex digits).
SHORTEST_PREFIX = 6


def parse_since(value: str) -> dt.datetime:
    """``2026-11-01`` (midnight, current time zone) or an ISO date-time (naive = current time zone)."""
    problem = CommandError(f"--since {value!r}: use a date (2026-11-01) or an ISO date-time")
    try:
        moment = parse_datetime(value)
        day = parse_date(value) if moment is None else None
    except ValueError:  # well formed, impossible (2026-13-01)
        raise problem from None
    if moment is None:
        if day is None:
            raise problem
        moment = dt.datetime.combine(day, dt.time.min)
    try:
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        return moment.astimezone(dt.UTC)  # stored UTC: a moment that has no UTC value is refused here
    except (OverflowError, ValueError):  # the first or last hours of the calendar, shifted out of it
        raise CommandError(f"--since {value!r}: out of the range of dates") from None


def campaign_key(value: str) -> str:
    """The key of ``--campaign``, once a campaign has it; an empty key is refused, not taken for every
    campaign."""
    if not value.strip():
        raise CommandError("--campaign: give the campaign's key (it is empty).")
    if not Campaign.objects.filter(key=value).exists():
        raise CommandError(f"No campaign with key {value!r}.")
    return value


def _fit(text: str, width: int) -> str:
    if not width:
        return text
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.ljust(width)


def _verdict_cell(call: Call) -> str:
    if call.verdict == Verdict.NOT_BILLABLE:
        return ("not billable: " + ", ".join(call.reason_codes)) if call.reason_codes else "not billable"
    return call.verdict


class Command(BaseCommand):
    help = "List calls, or show one call with its routing decision, attempts and verdict."
    # Read-only: no system checks, so the command still works to investigate an incident while some
    # other part of the project (URLs, carrier views) is broken.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{list,show,close-abandoned,judge}")

        listing = actions.add_parser("list", help="Newest calls first, as a table or JSON.")
        listing.add_argument("--campaign", metavar="KEY", help="Only calls of this campaign (its key).")
        listing.add_argument("--verdict", choices=Verdict.values, help="Only calls with this verdict.")
        listing.add_argument("--since", metavar="DATE",
                             help="Only calls started at or after this date (2026-11-01) or ISO date-time.")
        listing.add_argument("--limit", type=int, default=50,
                             help="At most this many calls (default 50; 0 for all).")
        listing.add_argument("--json", action="store_true", help="A JSON array instead of a table.")

        show = actions.add_parser("show", help="One call: facts, routing decision, attempts, verdict.")
        show.add_argument("call_sid", metavar="CALLSID",
                          help="A CallSid, or its start (6 characters or more, as `callbroker run` shows it).")
        show.add_argument("--json", action="store_true", help="JSON instead of text.")
        show.add_argument("--events", action="store_true", help="Include the carrier webhooks received.")

        actions.add_parser("close-abandoned", help="End the calls whose final status never came (still in "
                                                   "progress or holding a slot 6 h after they started), and "
                                                   "record the calls whose inbound webhook never came (a final "
                                                   "status kept 1 h for it).")

        judge = actions.add_parser("judge", help="Judge ended calls still pending (no rule left to judge them by: "
                                                 "their campaign, or the line a buyer talked on, deleted) not "
                                                 "billable, all or none; who and why go to their events.")
        judge.add_argument("call_sids", metavar="CALLSID", nargs="+", help="A whole CallSid (one or more).")
        judge.add_argument("--not-billable", action="store_true", required=True,
                           help="The verdict (the only one staff give: billing needs a campaign's price).")
        judge.add_argument("--note", default="", metavar="TEXT",
                           help=f"Why, kept in the calls' events (at most {NOTE_MAX} characters).")

    def handle(self, *args, **options) -> None:
        doing = {"judge": "judge", "close-abandoned": "close"}.get(options["action"], "read")
        with reading_the_database("calls", doing):
            if options["action"] == "list":
                self.list_calls(options)
            elif options["action"] == "show":
                self.show_call(options)
            elif options["action"] == "judge":
                self.judge(options)
            else:
                self.close_abandoned()

    def judge(self, options: dict) -> None:
        """Staff's verdict for ended calls no rule can judge (``staff.judge_not_billable``): all or none."""
        sids = [sid.strip() for sid in options["call_sids"]]
        if not all(sids):
            raise CommandError("CALLSID: give a whole CallSid (one is empty).")
        try:
            note = clean_note(options["note"])
        except ValueError as exc:
            raise CommandError(f"--{exc}") from None
        try:
            judged = judge_not_billable(sids, by=FROM_THE_CLI, note=note)
        except NotJudged as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Judged {counted(len(judged), 'call')} not billable ({Reason.JUDGED_BY_STAFF}), nothing posted to the "
                          "ledger:")
        for sid in judged:
            self.stdout.write(f"  {sid}")

    def close_abandoned(self) -> None:
        """The background pass's sweeps, once: calls whose final status never came are closed, then the final
        statuses whose inbound webhook never came are kept as calls of their own, then the cap counts of
        finished periods are deleted, a pass's share (one timer for all three, where the app processes don't
        sweep by themselves: without the last, that timer left the cap counts to grow for good). A later step
        failing says which, and what the earlier ones did: it said "Cannot close calls" though they were."""
        from callbroker.calls.replay import STATUS_ONLY_AFTER, in_words, record_kept_statuses
        from callbroker.calls.services import ABANDONED_AFTER, STATUS_ONLY, close_abandoned
        from callbroker.network import cap_counts

        hours = int(ABANDONED_AFTER.total_seconds() // 3600)
        closed: list[str] = []  # as they are closed: an outage part-way must not hide those closed before it
        try:
            close_abandoned(closed_so_far=closed)
        except (OperationalError, ProgrammingError):
            if not closed:
                raise  # nothing done: "Cannot close calls …" says it all
            self._say_closed(closed, hours)
            with reading_the_database("calls", "close", done=f"calls closed: {len(closed)} (listed above)"):
                raise
        if not closed:
            self.stdout.write(f"No call still in progress or holding a slot {hours} h after it started.")
        else:
            self._say_closed(closed, hours)
        done = f"calls closed: {len(closed)}"
        with reading_the_database("calls known only from a final status", "record", done=done):
            recorded = record_kept_statuses()
        if recorded:
            self.stdout.write(f"Recorded {counted(len(recorded), 'call')} known only from a final status whose inbound webhook "
                              f"never came ({in_words(STATUS_ONLY_AFTER.total_seconds())} after it; "
                              f"{STATUS_ONLY}, not billable):")
            for sid in recorded:
                self.stdout.write(f"  {sid}")
        done += f", calls recorded from a final status: {len(recorded)}"
        with reading_the_database("cap counts of finished periods", "delete", done=done):
            deleted = cap_counts.forget_finished_periods(most=cap_counts.MOST_A_PASS)
        if deleted:
            self.stdout.write(f"Deleted {cap_counts.counted(deleted)} of finished periods (over in every time "
                              f"zone 3 days ago; at most {cap_counts.MOST_A_PASS:,} a run, the next run going on).")

    def _say_closed(self, closed: list[str], hours: int) -> None:
        self.stdout.write(f"Closed {counted(len(closed), 'call')} whose final status never came ({hours} h after they "
                          "started), any slot held given back:")
        for sid in closed:
            self.stdout.write(f"  {sid}")

    # ----------------------------------------------------------------------------------------------

    def filtered(self, options: dict) -> QuerySet[Call]:
        """The calls the options ask for. An option given empty (``--campaign ""``, as a script with an
        unset variable writes it) is refused, never read as "not given": that would list every call."""
        calls = Call.objects.order_by("-started_at", "-id")
        if options.get("campaign") is not None:
            calls = calls.filter(campaign__key=campaign_key(options["campaign"]))
        if options.get("verdict"):
            calls = calls.filter(verdict=options["verdict"])
        if options.get("since") is not None:
            calls = calls.filter(started_at__gte=parse_since(options["since"]))
        limit = options.get("limit")
        if limit is not None and limit < 0:
            raise CommandError("--limit must be 0 (all) or more.")
        if limit:
            calls = calls[:limit]
        return calls

    def list_calls(self, options: dict) -> None:
        calls = list(with_related(self.filtered(options)))
        if options["json"]:
            self.write_json([call_to_dict(call) for call in calls])
            return
        if not calls:
            self.stdout.write("No calls match.")
            return
        zone = timezone.get_current_timezone_name()
        rows = [self._cells(call) for call in calls]
        widths = [max([width, *(len(cells[i]) for cells in rows)]) if name in _WHOLE and width else width
                  for i, (name, width) in enumerate(_COLUMNS)]
        headers = ["TIME (" + zone + ")" if name == "TIME" else name for name, _ in _COLUMNS]
        header = "  ".join(_fit(name, width) for name, width in zip(headers, widths, strict=True))
        self.stdout.write(header.rstrip())
        for cells in rows:
            row = "  ".join(_fit(cell, width) for cell, width in zip(cells, widths, strict=True))
            self.stdout.write(row.rstrip())

    @staticmethod
    def _cells(call: Call) -> tuple[str, ...]:
        """One call's row of the ``list`` table, in the order of ``_COLUMNS``."""
        return (
            timezone.localtime(call.started_at).strftime("%Y-%m-%d %H:%M:%S"),
            call.call_sid,
            call.to_number,
            call.campaign.name if call.campaign else "—",
            caller_text(call),
            f"{call.caller_zip} ({call.zip_source})" if call.caller_zip else "?",
            routed_text(call).removeprefix("→ "),
            format_seconds(call.talk_seconds) if was_connected(call) else "—",
            _verdict_cell(call),
        )

    def show_call(self, options: dict) -> None:
        sid = options["call_sid"].strip()
        if not sid:
            raise CommandError("CALLSID: give a CallSid or its start (it is empty).")
        call = with_related(Call.objects.filter(call_sid=sid)).first()
        if call is None and len(sid) >= SHORTEST_PREFIX:  # the start of one, as the live view shows it
            found = list(with_related(Call.objects.filter(call_sid__startswith=sid))[:2])
            if len(found) > 1:
                raise CommandError(f"More than one call's CallSid starts with {sid!r}: give more of it.")
            call = found[0] if found else None
        if call is None and len(sid) < SHORTEST_PREFIX:
            raise CommandError(f"No call with CallSid {sid!r} (the start of a CallSid must be {SHORTEST_PREFIX} "
                               "characters or more).")
        if call is None:
            raise CommandError(f"No call with CallSid {sid!r}.")
        if options["json"]:
            self.write_json(call_to_dict(call, with_events=options["events"]))
            return
        self.stdout.write("\n".join(call_detail_lines(call, with_events=options["events"])))

    def write_json(self, data: object) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder))
