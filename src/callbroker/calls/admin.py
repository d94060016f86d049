"""Admin for calls: read the facts and the routing story of every call; record the buyer's outcome.

Calls, attempts and events are written by the call path only. In the admin every fact is read-only;
the one thing staff may change is the buyer's outcome (outcome, job value, note), and the one verdict they
may give is "not billable" to an ended call no rule can judge (the list's action, ``calls.staff``),
recorded in its events. Nothing is added or deleted here: calls feed billing, and the event log is
append-only. The one exception is the list of final statuses kept for a call not recorded yet
(``KeptStatus``), a to-do list of the sweep, not a record: staff may take a status off it (see
``KeptStatusAdmin``).
"""

from __future__ import annotations

import datetime as dt
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import OperationalError
from django.db.models import JSONField, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from callbroker.calls.choices import EventKind
from callbroker.calls.events import TERMINAL_STATUSES, parse_seconds
from callbroker.calls.models import Call, CallAttempt, CallEvent, KeptStatus
from callbroker.calls.presenters import (
    call_currency,
    caller_text,
    datetime_text,
    decided_at_text,
    decision_passes,
    fallback_text,
    format_seconds,
    left_out_text,
    money_text,
    reason_short_label,
    reason_texts,
    routed_short_text,
    short_time_text,
    was_connected,
    with_related,
    zip_short_text,
    zip_source_short,
)
from callbroker.calls.staff import MOST_AT_ONCE, NOTE_MAX, NotJudged, clean_note, judge_not_billable, refusals
from callbroker.core.model import Reason
from callbroker.ops.admin_lists import SafeChangeListMixin, recent_filter, since_first_id

#: The only fields of a call staff may edit: what the buyer says happened after the call.
OUTCOME_FIELDS = ("outcome", "job_value", "outcome_note")

#: How many fieldsets of the call page come before the attempts (see templates/admin/calls/call/).
FIELDSETS_BEFORE_ATTEMPTS = 2


class ViewOnlyMixin:
    """No add, change or delete: the rows are written by the call path."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _left_out_html(entries: list[dict]) -> str:
    return format_html_join(
        "", '<li><span title="target #{}">{}</span> — {}</li>',
        ((e["id"], e["name"], left_out_text(e)) for e in entries),
    )


def _pass_html(routing: dict, number: int, count: int) -> str:
    """One routing pass: when and for which ZIP, the ring list, every target left out and why."""
    title = f"Pass {number} of {count}: " if count > 1 else ""
    where = "ZIP unknown"
    if routing["caller_zip"]:
        where = f"ZIP {routing['caller_zip']} ({zip_source_short(routing['zip_source'])})"
    parts = [format_html('<p class="cb-when">{}decided {} for {}</p>', title,
                         _decided_text(routing["at"]), where)]
    if routing["ring"]:
        sticky_note = " (repeat caller: rang first)" if routing["sticky"] else ""
        ring = format_html_join(
            "", '<li><span title="target #{}">{}</span>{}</li>',
            ((entry["id"], entry["name"], sticky_note if place == 0 else "")
             for place, entry in enumerate(routing["ring"])),
        )
        parts.append(format_html("<h4>Ring list</h4><ol>{}</ol>", ring))
    else:
        parts.append(format_html("<p>{}</p>", "Ring list empty: no target could take the call."))
    if routing["excluded"]:
        parts.append(format_html("<h4>Excluded</h4><ul>{}</ul>", _left_out_html(routing["excluded"])))
    if routing["refused_at_dial"]:
        parts.append(format_html("<h4>Skipped when their turn came</h4><ul>{}</ul>",
                                 _left_out_html(routing["refused_at_dial"])))
    if routing["fallback"]:
        parts.append(format_html("<p><strong>Fallback:</strong> {}</p>", fallback_text(routing["fallback"])))
    return format_html('<div class="cb-pass">{}</div>', format_html_join("", "{}", ((part,) for part in parts)))


def _decided_text(value: str | None) -> str:
    """A decision's stored time in the one date format of the page (with its time zone)."""
    text = decided_at_text(value)
    return f"{text} {timezone.localtime().tzname()}" if text[:4].isdigit() and text[4:5] == "-" else text


#: Small CSS for the call page's own HTML: lists start at the left edge of the value (no 170 px indent).
_CALL_CSS = ("#content .cb-pass ol,#content .cb-pass ul{margin:0 0 .3em 1.4em;padding:0}"
             ".cb-pass h4{margin:.6em 0 .2em;padding:0;font-size:.75rem;text-transform:uppercase;color:var(--body-quiet-color)}"
             ".cb-pass ol,.cb-pass ul{margin:0 0 0 1.4em;padding:0}.cb-pass li{list-style:inherit;padding:1px 0}"
             ".cb-pass ol li{list-style-type:decimal}.cb-pass ul li{list-style-type:disc}"
             ".cb-pass p{margin:0 0 .3em;padding:0}")


class CallAttemptInline(ViewOnlyMixin, admin.TabularInline):
    """The ring tree as a compact table of its own (see the template); nothing is editable."""

    model = CallAttempt
    extra = 0
    can_delete = False
    show_change_link = False
    template = "admin/calls/call/attempts_inline.html"
    fields = ("sequence", "target", "number", "result", "ring_seconds", "talk_seconds", "started_at",
              "dial_call_sid")
    readonly_fields = fields
    ordering = ("sequence",)
    verbose_name_plural = "attempts (ring tree, in order)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[CallAttempt]:
        return super().get_queryset(request).select_related("target__buyer", "buyer")


class StaffNoteForm(forms.Form):
    """The note staff give with a verdict (kept in the calls' events)."""

    note = forms.CharField(label="note", required=False, max_length=NOTE_MAX, strip=True,
                           widget=forms.Textarea(attrs={"rows": 3, "cols": 80}))

    def clean_note(self) -> str:
        try:
            return clean_note(self.cleaned_data.get("note"))
        except ValueError as exc:
            raise forms.ValidationError(str(exc).removeprefix("note: ")) from None


class OutcomeForm(forms.ModelForm):
    """The call page's outcome fields, each posted with the value the page showed (a hidden ``initial-``
    input: Django's ``show_hidden_initial``), so that what staff changed is what differs from the page, not
    from the row as it is when they save. Another staff member may have saved the same call's outcome since
    the page was opened: compared with the row, the page's old copy of the fields left alone counted as a
    change and overwrote what the other saved. Now those keep it, and a field both changed, to different
    values, is refused with its error and nothing written (reload, then change it again)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in OUTCOME_FIELDS:
            # A page rendered before this form existed (a rolling restart) posts no such input: compared with
            # the row, as then.
            if name in self.fields and (not self.is_bound or self[name].html_initial_name in self.data):
                self.fields[name].show_hidden_initial = True

    def outcome_changes(self) -> list[str]:
        """The outcome fields staff changed on the page (a note's line ends aside: a browser posts a text area's
        as CRLF, and reads the hidden copy's CR LF as LF)."""
        if not hasattr(self, "cleaned_data"):
            return []
        return [name for name in OUTCOME_FIELDS if name in self.cleaned_data
                and not _same(self._shown(name), self.cleaned_data[name])]

    def clean(self) -> dict:
        cleaned = super().clean()
        changed = self.outcome_changes()
        if not changed or self.instance.pk is None:
            return cleaned
        # The row locked until the save commits (the change view is one transaction; on SQLite it holds the
        # write lock already): no other save of the outcome between this check and the write.
        row = Call.objects.select_for_update().filter(pk=self.instance.pk).values(*OUTCOME_FIELDS).get()
        for name in changed:
            if not _same(row[name], self._shown(name)) and not _same(row[name], cleaned[name]):
                self.add_error(name, f"Changed by someone else since this page was opened (now: "
                                     f"{_outcome_value_text(name, row[name])}). Nothing was saved: reload the "
                                     f"page to see it, then make your change again.")
        return cleaned

    def _shown(self, name: str):
        """The value of field ``name`` the page showed (its hidden copy), else the row's as read for this post."""
        field, bound = self.fields[name], self[name]
        if field.show_hidden_initial:
            try:
                return field.to_python(self.data.get(bound.html_initial_name))
            except forms.ValidationError:
                pass  # not a value the page can have shown: the row's, as for a page without the copy
        return bound.initial


def _same(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.replace("\r\n", "\n") == b.replace("\r\n", "\n")
    return a == b


def _outcome_value_text(name: str, value) -> str:
    """A value of an outcome field in the words of the page (its choice's label; "empty")."""
    if value in (None, ""):
        return "empty"
    if name == "outcome":
        return str(dict(Call._meta.get_field("outcome").choices).get(value, value))
    text = str(value)
    return f"{text[:80]}…" if len(text) > 80 else text


@admin.action(description="Judge not billable (ended calls still pending)", permissions=["change"])
def judge_not_billable_action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Call]):
    """Staff's verdict for ended calls no rule can judge (``calls.staff``): a page listing them with a
    note to give, then all judged, or none with a message naming each call refused and why. Calls in
    progress or judged already are refused before the page is shown, and again when it is posted."""
    count = queryset.count()
    if count > MOST_AT_ONCE:
        modeladmin.message_user(request, f"Nothing judged (all or none): {count} calls are too many at once (at "
                                         f"most {MOST_AT_ONCE}): judge them in parts.", messages.ERROR)
        return None
    calls = list(queryset.order_by("started_at", "id"))  # with what the page shows (CallAdmin.get_queryset)
    sids = [call.call_sid for call in calls]
    if request.POST.get("post") != "yes":
        problems = refusals(sids)
        if problems:
            modeladmin.message_user(request, str(NotJudged(problems)), messages.ERROR)
            return None
        form = StaffNoteForm()
    else:
        form = StaffNoteForm(request.POST)
        if form.is_valid():
            try:
                judged = judge_not_billable(sids, by=request.user.get_username(), note=form.cleaned_data["note"])
            except NotJudged as exc:
                modeladmin.message_user(request, str(exc), messages.ERROR)
                return None
            except OperationalError:  # the database busy or away: nothing was written (one transaction)
                modeladmin.message_user(request, "Nothing judged: the database could not be written just now; "
                                                 "try again.", messages.ERROR)
                return None
            modeladmin.message_user(request, f"Judged {len(judged)} call(s) not billable ({Reason.JUDGED_BY_STAFF}), "
                                             "nothing posted to the ledger.", messages.SUCCESS)
            return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Judge not billable",
        "opts": modeladmin.model._meta,
        "calls": [{"pk": call.pk, "sid": call.call_sid, "started": datetime_text(call.started_at),
                   "routed": _what_happened(call)} for call in calls],
        "form": form,
        "reason": Reason.JUDGED_BY_STAFF.value,
        "action": "judge_not_billable_action",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    return TemplateResponse(request, "admin/calls/call/judge_not_billable.html", context)


def _what_happened(call: Call) -> str:
    """Where the call went and how long the caller talked, for the confirmation page."""
    talked = f", talked {format_seconds(call.talk_seconds)}" if was_connected(call) else ""
    return f"{routed_short_text(call)}{talked}"


@admin.register(Call)
class CallAdmin(SafeChangeListMixin, admin.ModelAdmin):
    # Compact enough for 1280 px with both sidebars: the ZIP goes under the caller, the talk time under
    # where the call went; the publisher is a filter.
    list_display = ("when", "verdict", "sid", "campaign", "caller_and_zip", "routed_and_talk", "revenue_text",
                    "reasons")
    list_display_links = ("when", "sid")
    list_filter = ("verdict", "stage", "zip_source", "outcome", "campaign", "publisher")
    date_hierarchy = "started_at"
    search_fields = ("^call_sid", "caller_number", "caller_raw", "to_number", "tracking_number__number")
    search_help_text = "CallSid (or its beginning), caller number or tracking number."
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    actions = (judge_not_billable_action,)
    inlines = (CallAttemptInline,)
    change_form_template = "admin/calls/call/change_form.html"
    form = OutcomeForm
    # The first FIELDSETS_BEFORE_ATTEMPTS fieldsets come before the attempts, the rest after them.
    fieldsets = (
        ("Summary", {"fields": ("verdict", "reason_list", "revenue_text", "payout_text", "routed_summary",
                                "talk_time", "caller", "campaign", "publisher", "started", "ended")}),
        ("Routing", {"fields": ("routing",)}),
        ("Outcome (from the buyer)", {"fields": (*OUTCOME_FIELDS, "outcome_recorded")}),
        ("Caller", {"fields": (("caller_number", "caller_raw", "caller_status"),
                               ("caller_zip", "zip_source", "zip_attempts"),
                               ("caller_city", "caller_state"), ("stir_verstat", "category_confirmed"),
                               "in_area")}),
        ("Carrier details", {"classes": ("collapse",),
                             "fields": ("call_sid", "account_sid", "carrier",
                                        ("stage", "ivr_prompt", "final_status"),
                                        "duration_seconds", ("to_number", "tracking_number"),
                                        ("fallback_applied", "connected_target", "buyer"),
                                        "qualified")}),
        ("Recording", {"classes": ("collapse",),
                       "fields": ("recording_sid", "recording_url", "recording_seconds")}),
        ("Carrier events", {"classes": ("collapse",), "fields": ("events",)}),
        ("Stored decision (JSON)", {"classes": ("collapse",), "fields": ("decision_json", "ring_position")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        return with_related(super().get_queryset(request))

    def get_readonly_fields(self, request: HttpRequest, obj: Call | None = None) -> list[str]:
        facts = [f.name for f in Call._meta.concrete_fields if f.name not in OUTCOME_FIELDS]
        return [*facts, "routing", "reason_list", "events", "decision_json", "revenue_text", "payout_text",
                "routed_summary", "talk_time", "caller", "started", "ended", "outcome_recorded", "qualified"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # calls come from the carrier

    def has_delete_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False  # calls feed billing and reports; they are never deleted from the admin

    def save_model(self, request: HttpRequest, obj: Call, form: OutcomeForm, change: bool) -> None:
        changed = form.outcome_changes()
        if not changed:
            return
        # The fields this form left alone as the row holds them now, read locked until this save commits (the
        # change view is one transaction; on SQLite it holds the write lock already): another staff member's
        # save of the same call may have committed since this form's copy was read (PostgreSQL), and whether
        # the outcome is cleared is judged from the row as it will be, not from that copy (which made a call
        # keep the other's job value with no time it was recorded).
        row = Call.objects.select_for_update().filter(pk=obj.pk).values(*OUTCOME_FIELDS).get()
        for name in OUTCOME_FIELDS:
            if name not in changed:
                setattr(obj, name, row[name])
        # Cleared (every outcome field empty): no outcome, so no moment it was recorded either.
        cleared = all(getattr(obj, name) in (None, "") for name in OUTCOME_FIELDS)
        obj.outcome_at = None if cleared else timezone.now()
        # Only the outcome: the rest of the row (verdict, money) may have been judged again meanwhile by a
        # late callback, and this form's copy of it is as old as the page.
        obj.save(update_fields=[*changed, "outcome_at"])

    def render_change_form(self, request, context, *args, **kwargs):
        context["cb_css"] = _CALL_CSS
        context["fieldsets_before_attempts"] = FIELDSETS_BEFORE_ATTEMPTS
        return super().render_change_form(request, context, *args, **kwargs)

    # ---- list columns ---------------------------------------------------------------------------

    @admin.display(description="time", ordering="started_at")
    def when(self, call: Call) -> str:
        return format_html('<span title="{}">{}</span>', datetime_text(call.started_at),
                           short_time_text(call.started_at))

    @admin.display(description="CallSid", ordering="call_sid")
    def sid(self, call: Call) -> str:
        short = call.call_sid if len(call.call_sid) <= 12 else f"{call.call_sid[:10]}…"
        return format_html('<span class="cb-sid" title="{}">{}</span>', call.call_sid, short)

    @admin.display(description="caller", ordering="caller_number")
    def caller(self, call: Call) -> str:
        return caller_text(call)

    @admin.display(description="ZIP", ordering="caller_zip")
    def zip_display(self, call: Call) -> str:
        return zip_short_text(call)

    @admin.display(description="routed to")
    def routed_to(self, call: Call) -> str:
        return routed_short_text(call)

    @admin.display(description="caller · ZIP", ordering="caller_number")
    def caller_and_zip(self, call: Call) -> str:
        return format_html('{}<br><small class="quiet">ZIP {}</small>', caller_text(call), zip_short_text(call))

    @admin.display(description="routed to · talk")
    def routed_and_talk(self, call: Call) -> str:
        if not was_connected(call):
            return routed_short_text(call)
        return format_html('{}<br><small class="quiet">talked {}</small>', routed_short_text(call),
                           format_seconds(call.talk_seconds))

    @admin.display(description="talk", ordering="talk_seconds")
    def talk(self, call: Call) -> str:
        return format_seconds(call.talk_seconds) if was_connected(call) else "—"

    @admin.display(description="revenue", ordering="revenue")
    def revenue_text(self, call: Call) -> str:
        return money_text(call.revenue, call_currency(call))

    @admin.display(description="not billable because")
    def reasons(self, call: Call) -> str:
        if not call.reason_codes:
            return "—"
        # The short label, with the sentence the call was judged with (else the label) on hover: read from the
        # row itself, no query per call listed.
        return format_html_join(
            ", ", '<span title="{}">{}</span>',
            ((words, reason_short_label(code)) for code, words in reason_texts(call)),
        )

    # ---- change page ----------------------------------------------------------------------------

    @admin.display(description="not billable because")
    def reason_list(self, call: Call) -> str:
        if not call.reason_codes:
            return "—"
        return format_html_join("; ", '<span title="{}">{}</span>', reason_texts(call))

    @admin.display(description="payout")
    def payout_text(self, call: Call) -> str:
        return money_text(call.payout, call_currency(call))

    @admin.display(description="routed to")
    def routed_summary(self, call: Call) -> str:
        return routed_short_text(call)

    @admin.display(description="talk time")
    def talk_time(self, call: Call) -> str:
        # "—" only for a call no buyer was bridged to: a buyer who hung up at once talked 0 s, which the
        # reason below the buffer says too ("talked 0 s with the buyer"), as do `calls list` and `calls show`.
        if not was_connected(call):
            return "—"
        return f"{format_seconds(call.talk_seconds)} ({call.talk_seconds} s)"

    @admin.display(description="started")
    def started(self, call: Call) -> str:
        return datetime_text(call.started_at)

    @admin.display(description="ended")
    def ended(self, call: Call) -> str:
        if not call.ended_at:
            return "—"
        return f"{datetime_text(call.ended_at)} ({format_seconds(call.duration_seconds)})"

    @admin.display(description="outcome recorded")
    def outcome_recorded(self, call: Call) -> str:
        return datetime_text(call.outcome_at)

    @admin.display(description="qualified")
    def qualified(self, call: Call) -> str:
        return datetime_text(call.qualified_at)

    @admin.display(description="routing decision")
    def routing(self, call: Call) -> str:
        passes = decision_passes(call)
        if not passes:
            return "Not routed (no decision recorded)."
        return format_html_join("", "{}", ((_pass_html(routing, number, len(passes)),)
                                           for number, routing in enumerate(passes, start=1)))

    @admin.display(description="carrier events")
    def events(self, call: Call) -> str:
        rows = CallEvent.objects.filter(call_sid=call.call_sid).order_by("id")
        if not rows:
            return "None."
        link = reverse("admin:calls_callevent_changelist") + "?" + urlencode({"call_sid": call.call_sid})
        table = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            ((datetime_text(e.received_at), e.kind,
              json.dumps(e.params, indent=1, sort_keys=True, ensure_ascii=False)) for e in rows),
        )
        return format_html(
            '<table><thead><tr><th>received</th><th>kind</th><th>parameters</th></tr></thead>'
            '<tbody>{}</tbody></table><p><a href="{}">Open these events</a></p>', table, link,
        )

    @admin.display(description="decision as stored")
    def decision_json(self, call: Call) -> str:
        if call.decision is None:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(call.decision, indent=2, ensure_ascii=False))


def _attempts_of_calls_started_since(attempts: QuerySet[CallAttempt], since: dt.datetime) -> QuerySet[CallAttempt]:
    """The attempts of the calls started since ``since``: from the first of those calls by id (found on the
    calls' index on their start), a range of ``attempt_unique_sequence``; each call's start checked too (a
    call recorded late, with a higher id, may have started before)."""
    # Not MIN(id): SQLite would answer it along the primary key, reading every older call to find none.
    first = Call.objects.filter(started_at__gte=since).order_by("id").values_list("id", flat=True).first()
    if first is None:
        return attempts.none()
    return attempts.filter(call_id__gte=first, call__started_at__gte=since)


@admin.register(CallAttempt)
class CallAttemptAdmin(ViewOnlyMixin, SafeChangeListMixin, admin.ModelAdmin):
    """Every target rung, the calls recorded last first, each call's ring tree in order.

    In the order of ``attempt_unique_sequence`` (call, sequence), read backwards for the calls: the page reads
    its rows along that index and stops. The model's order (its call's start time, then the sequence) read
    every attempt with its call, target and buyer, then sorted them all, on every page: 0.15 s for 100,000
    attempts on SQLite, growing with the months kept. Calls are numbered as they are recorded, so this is
    their order of starting too, except for a call recorded late (replayed after an outage).

    No date drill-down: the time an attempt was dialled leads no index (on purpose: one more B-tree per
    webhook), and Django's drill-down read every attempt for its years, months and days (0.4-0.6 s a page for
    100,000 attempts on SQLite). The list is narrowed instead to the calls started in the last hour, day, week
    or month, found on the calls' index on their start (:func:`_attempts_of_calls_started_since`).
    """

    list_display = ("started_at", "call", "sequence", "target", "buyer", "number", "ring_seconds",
                    "talk_seconds", "result")
    ordering = ("-call_id", "sequence")
    list_filter = (recent_filter("call started", _attempts_of_calls_started_since), "result", "buyer")
    list_select_related = ("call", "target__buyer", "buyer")
    search_fields = ("=call__call_sid", "number", "=dial_call_sid")
    show_full_result_count = False


class KindFilter(admin.SimpleListFilter):
    """The event log's kinds from the code's list (:class:`EventKind`), not from every row of the log."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(EventKind.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[CallEvent]) -> QuerySet[CallEvent]:
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(CallEvent)
class CallEventAdmin(ViewOnlyMixin, SafeChangeListMixin, admin.ModelAdmin):
    """The append-only webhook log, for audit and replay: newest first, a call's own events in order.

    What staff look for here is a call's events (the call page's link, or a search by CallSid: the
    (CallSid, key) index) or what came in at a recent moment (the log newest first, along the primary key,
    narrowed to the last hour, day, week or month). Every page reads its rows along an index and stops:

    - newest first (``-id``): the page is the last rows written. It was the oldest first, so page 1 showed
      the log's first months; a call's own events (``?call_sid=``, the call page's "Open these events") keep
      the order they came in (``id``), as the call page lists them;
    - no date drill-down: ``received_at`` leads no index (on purpose: one more B-tree written per webhook), and
      Django's drill-down read the whole log for its years, months and days (0.8-1.5 s a page at 150,000
      events on SQLite). The "received" filter keeps the events written since the first one of that moment
      (``admin_lists.first_id_since``: ids grow with time): approximate around an event replayed from the
      spool, which is written late and keeps the time the carrier posted it;
    - the kinds to filter by are :class:`~callbroker.calls.choices.EventKind` (every kind the code writes),
      not a ``SELECT DISTINCT`` of the whole log.
    """

    list_display = ("received_at", "call_sid", "kind", "dedupe_key")
    list_filter = (recent_filter("received", since_first_id("received_at")), KindFilter)
    search_fields = ("=call_sid", "dedupe_key")
    show_full_result_count = False
    fields = ("call_sid", "kind", "received_at", "dedupe_key", "params_pretty", "response")
    readonly_fields = fields

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        return ("id",) if request.GET.get("call_sid") else ("-id",)

    @admin.display(description="parameters")
    def params_pretty(self, event: CallEvent) -> str:
        params = json.dumps(event.params, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html("<pre>{}</pre>", params)


@admin.register(KeptStatus)
class KeptStatusAdmin(SafeChangeListMixin, admin.ModelAdmin):
    """The final statuses that came before their call was recorded, kept for its inbound webhook
    (``services.call_status``) until the sweep keeps each as a call of its own an hour on, or finds its call
    recorded (``replay.record_kept_statuses``): what is waiting, and since when. Written by the status
    webhook and the sweep only: nothing is added or changed here.

    Deleting one is allowed: a row is the sweep's to-do item, not a record. Its status stays in the event log,
    where an inbound webhook handled later still finds it and records the call as ended; deleted, the status
    is only not turned into a call of its own (``status_only``, never billable: no money rests on it), as
    before the list existed. So staff can take off a status the sweep fails to record at every pass.
    """

    list_display = ("kept", "call_sid", "described", "final_status")
    list_display_links = ("kept", "call_sid")
    date_hierarchy = "received_at"
    search_fields = ("=call_sid",)
    search_help_text = "CallSid (whole)."
    show_full_result_count = False
    fields = ("call_sid", "kept", "described", "final_status", "events")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[KeptStatus]:
        # The status itself is in the event log (its first final one, as the sweep reads it): one subquery
        # on the event log's (CallSid, key) index, not a query per row.
        final = (CallEvent.objects.filter(call_sid=OuterRef("call_sid"), kind="status",
                                          params__CallStatus__in=sorted(TERMINAL_STATUSES))
                 .order_by("id").values("params")[:1])
        return super().get_queryset(request).annotate(status_params=Subquery(final, output_field=JSONField()))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # kept by the status webhook only

    def has_change_permission(self, request: HttpRequest, obj: KeptStatus | None = None) -> bool:
        return False  # the status as it came

    @admin.display(description="kept", ordering="received_at")
    def kept(self, kept: KeptStatus) -> str:
        return format_html('<span title="{}">{}</span>', datetime_text(kept.received_at),
                           short_time_text(kept.received_at))

    @admin.display(description="the call as its status describes it")
    def described(self, kept: KeptStatus) -> str:
        inbound = kept.inbound if isinstance(kept.inbound, dict) else {}
        place = ", ".join(part for part in (inbound.get("from_zip"), inbound.get("from_state")) if part)
        text = f"{inbound.get('from_raw') or 'unknown caller'} → {inbound.get('to') or '?'}"
        return f"{text} ({place})" if place else text

    @admin.display(description="final status")
    def final_status(self, kept: KeptStatus) -> str:
        params = getattr(kept, "status_params", None)
        if not isinstance(params, dict):
            return "— (not in the event log)"
        status = str(params.get("CallStatus", ""))
        try:  # as the status webhook read it
            return f"{status}, {format_seconds(parse_seconds(str(params.get('CallDuration', ''))))}"
        except ValueError:
            return status

    @admin.display(description="carrier events")
    def events(self, kept: KeptStatus) -> str:
        link = reverse("admin:calls_callevent_changelist") + "?" + urlencode({"call_sid": kept.call_sid})
        return format_html('<a href="{}">Open the events of {}</a>', link, kept.call_sid)
