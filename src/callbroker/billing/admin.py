"""Admin for the ledger: read every entry, filter by kind, buyer, publisher, campaign and date; change
nothing.

Entries are posted by the call flow only (``billing.services.post_verdict``) and never changed or deleted:
a correction is a reversal, posted when the call's verdict changes. So nothing here adds, edits or
deletes, not even for superusers.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from callbroker.billing.models import LedgerEntry
from callbroker.calls.admin import ViewOnlyMixin
from callbroker.calls.presenters import datetime_text, money_text
from callbroker.ops.admin_lists import SafeChangeListMixin


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ViewOnlyMixin, SafeChangeListMixin, admin.ModelAdmin):
    list_display = ("posted", "kind", "call_link", "generation", "buyer", "publisher", "campaign",
                    "amount_text", "memo")
    list_filter = ("kind", "buyer", "publisher", "campaign", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("buyer", "publisher", "campaign")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")  # newest first, as the calls
    search_fields = ("^call_sid",)
    search_help_text = "CallSid (or its beginning)."
    list_per_page = 100
    show_full_result_count = False  # no COUNT(*) over the whole ledger on every page
    fields = ("posted", "kind", "generation", "call_link", "buyer", "publisher", "campaign", "amount_text",
              "currency", "memo")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[LedgerEntry]:
        return super().get_queryset(request).select_related("buyer", "publisher", "campaign")

    def get_actions(self, request: HttpRequest) -> dict:
        return {}  # not even "delete selected"

    @admin.display(description="posted", ordering="created_at")
    def posted(self, entry: LedgerEntry) -> str:
        return datetime_text(entry.created_at)

    @admin.display(description="call", ordering="call_sid")
    def call_link(self, entry: LedgerEntry) -> str:
        url = reverse("admin:calls_call_change", args=[entry.call_id])
        return format_html('<a href="{}">{}</a>', url, entry.call_sid)

    @admin.display(description="amount", ordering="amount")
    def amount_text(self, entry: LedgerEntry) -> str:
        return money_text(entry.amount, entry.currency)
