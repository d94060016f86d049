"""Admin for calls: read the facts and the routing story of every call; record the buyer's outcome.

Calls, attempts and events are written by the call path only. In the admin every fact is read-only;
the one thing staff may change is the buyer's outcome (outcome, job value, note). Nothing is added or
deleted here: calls feed billing, and the event log is append-only.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.calls.presenters import (
    caller_text,
    decided_at_text,
    decision_passes,
    reason_label,
    routed_text,
    with_related,
)

#: The only fields of a call staff may edit: what the buyer says happened after the call.
OUTCOME_FIELDS = ("outcome", "job_value", "outcome_note")


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
        "", "<li>{} <small>#{}</small>: {} <code>{}</code></li>",
        ((e["name"], e["id"], e["label"], e["code"]) for e in entries),
    )


def _pass_html(routing: dict, number: int, count: int) -> str:
    """One routing pass: when and for which ZIP, the ring list, every target left out and why."""
    title = f"Pass {number} of {count}: " if count > 1 else ""
    where = "ZIP unknown"
    if routing["caller_zip"]:
        where = f"ZIP {routing['caller_zip']} ({routing['zip_source']})"
    parts = [format_html("<p>{}decided {} for {}</p>", title, decided_at_text(routing["at"]), where)]
    if routing["ring"]:
        sticky_note = " (repeat caller: rang first)" if routing["sticky"] else ""
        ring = format_html_join(
            "", "<li>{} <small>#{}</small>{}</li>",
            ((entry["name"], entry["id"], sticky_note if place == 0 else "")
             for place, entry in enumerate(routing["ring"])),
        )
        parts.append(format_html("<p>Ring list:</p><ol>{}</ol>", ring))
    else:
        parts.append(format_html("<p>{}</p>", "Ring list empty: no target could take the call."))
    if routing["excluded"]:
        parts.append(format_html("<p>Excluded:</p><ul>{}</ul>", _left_out_html(routing["excluded"])))
    if routing["refused_at_dial"]:
        parts.append(format_html("<p>Skipped when their turn came:</p><ul>{}</ul>",
                                 _left_out_html(routing["refused_at_dial"])))
    fallback = routing["fallback"]
    if fallback:
        detail = fallback.get("number") or fallback.get("message") or ""
        parts.append(format_html("<p>Fallback: {} {}</p>", fallback.get("kind", ""), detail))
    return format_html("<div>{}</div>", format_html_join("", "{}", ((part,) for part in parts)))


class CallAttemptInline(ViewOnlyMixin, admin.TabularInline):
    model = CallAttempt
    extra = 0
    can_delete = False
    show_change_link = False
    fields = ("sequence", "target", "buyer", "number", "started_at", "ended_at", "ring_seconds",
              "talk_seconds", "result", "dial_call_sid")
    readonly_fields = fields
    ordering = ("sequence",)
    verbose_name_plural = "attempts (ring tree, in order)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[CallAttempt]:
        return super().get_queryset(request).select_related("target__buyer", "buyer")


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ("started_at", "call_sid", "campaign", "publisher", "caller", "zip_display", "routed_to",
                    "talk_seconds", "verdict", "reasons")
    list_display_links = ("started_at", "call_sid")
    list_filter = ("verdict", "stage", "zip_source", "outcome", "campaign", "publisher")
    date_hierarchy = "started_at"
    search_fields = ("^call_sid", "caller_number", "caller_raw", "to_number", "tracking_number__number")
    search_help_text = "CallSid (or its beginning), caller number or tracking number."
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    inlines = (CallAttemptInline,)
    fieldsets = (
        (None, {"fields": ("call_sid", "started_at", "ended_at", "duration_seconds", "stage", "final_status",
                           "carrier", "account_sid")}),
        ("Source", {"fields": ("to_number", "tracking_number", "campaign", "publisher")}),
        ("Caller", {"fields": ("caller_number", "caller_raw", "caller_status", "caller_zip", "zip_source",
                               "zip_attempts", "caller_city", "caller_state", "stir_verstat",
                               "category_confirmed")}),
        ("Routing", {"fields": ("routing", "fallback_applied", "connected_target", "buyer", "talk_seconds",
                                "in_area")}),
        ("Qualification", {"fields": ("verdict", "reason_list", "revenue", "payout", "qualified_at")}),
        ("Outcome (from the buyer)", {"fields": (*OUTCOME_FIELDS, "outcome_at")}),
        ("Recording", {"classes": ("collapse",),
                       "fields": ("recording_sid", "recording_url", "recording_seconds")}),
        ("Carrier events", {"classes": ("collapse",), "fields": ("events",)}),
        ("Stored decision (JSON)", {"classes": ("collapse",), "fields": ("decision_json", "ring_position")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        return with_related(super().get_queryset(request))

    def get_readonly_fields(self, request: HttpRequest, obj: Call | None = None) -> list[str]:
        facts = [f.name for f in Call._meta.concrete_fields if f.name not in OUTCOME_FIELDS]
        return [*facts, "routing", "reason_list", "events", "decision_json"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # calls come from the carrier

    def has_delete_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False  # calls feed billing and reports; they are never deleted from the admin

    def save_model(self, request: HttpRequest, obj: Call, form, change: bool) -> None:
        if any(name in form.changed_data for name in OUTCOME_FIELDS):
            obj.outcome_at = timezone.now()
        super().save_model(request, obj, form, change)

    # ---- columns and read-only fields -----------------------------------------------------------

    @admin.display(description="caller", ordering="caller_number")
    def caller(self, call: Call) -> str:
        return caller_text(call)

    @admin.display(description="ZIP", ordering="caller_zip")
    def zip_display(self, call: Call) -> str:
        return f"{call.caller_zip} ({call.zip_source})" if call.caller_zip else "—"

    @admin.display(description="routed to")
    def routed_to(self, call: Call) -> str:
        return routed_text(call).removeprefix("→ ")

    @admin.display(description="reasons not billable")
    def reasons(self, call: Call) -> str:
        if not call.reason_codes:
            return "—"
        return format_html_join(
            ", ", '<span title="{}">{}</span>', ((reason_label(code), code) for code in call.reason_codes)
        )

    @admin.display(description="reasons not billable")
    def reason_list(self, call: Call) -> str:
        if not call.reason_codes:
            return "—"
        items = format_html_join("", "<li><code>{}</code>: {}</li>",
                                 ((code, reason_label(code)) for code in call.reason_codes))
        return format_html("<ul>{}</ul>", items)

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
            ((timezone.localtime(e.received_at).strftime("%Y-%m-%d %H:%M:%S"), e.kind,
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


@admin.register(CallAttempt)
class CallAttemptAdmin(ViewOnlyMixin, admin.ModelAdmin):
    list_display = ("started_at", "call", "sequence", "target", "buyer", "number", "ring_seconds",
                    "talk_seconds", "result")
    list_filter = ("result", "buyer")
    list_select_related = ("call", "target__buyer", "buyer")
    search_fields = ("=call__call_sid", "number", "=dial_call_sid")
    date_hierarchy = "started_at"
    show_full_result_count = False


@admin.register(CallEvent)
class CallEventAdmin(ViewOnlyMixin, admin.ModelAdmin):
    """The append-only webhook log, for audit and replay."""

    list_display = ("received_at", "call_sid", "kind", "dedupe_key")
    list_filter = ("kind",)
    search_fields = ("=call_sid", "dedupe_key")
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = ("call_sid", "kind", "received_at", "dedupe_key", "params_pretty", "response")
    readonly_fields = fields

    @admin.display(description="parameters")
    def params_pretty(self, event: CallEvent) -> str:
        params = json.dumps(event.params, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html("<pre>{}</pre>", params)
