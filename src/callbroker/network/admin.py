"""Django admin for the network: campaigns, buyers and their targets, publishers, tracking numbers.

The forms check every value with the same functions the network file loader uses: each column with
its rule in ``loader.FIELD_RULES`` (lengths, ranges, control characters, durations, phone numbers …),
areas and hours with ``callbroker.network.parsing``. So a value the admin accepts loads from a file and
the other way round, and a refusal says what the loader would say. Areas and hours are stored in their
canonical form.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.db.models import PROTECT, Count, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import capfirst

from callbroker.core.money import format_money
from callbroker.network import models as m
from callbroker.network import parsing
from callbroker.network.choices import FallbackChoices
from callbroker.network.loader import FIELD_RULES, not_a_tracking_number, not_dialled
from callbroker.network.parsing import NetworkError
from callbroker.network.services import clear_auto_pause, ensure_target_states
from callbroker.ops.admin_lists import SafeChangeListMixin
from callbroker.ops.admin_widgets import SafeAutocompleteMixin

# --------------------------------------------------------------------------------------------------
# form helpers: the loader's parsers, turned into field errors
# --------------------------------------------------------------------------------------------------


def _field_error(read: Callable[[Any], Any], value: Any) -> Any:
    """Run a parser; a ``ValueError`` becomes a ``ValidationError`` listing every problem."""
    try:
        return read(value)
    except NetworkError as exc:
        raise ValidationError([str(p) for p in exc.problems]) from None
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _list_of(read: Callable[[Any], Any], value: Any, example: str) -> list:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValidationError(f"Expected a JSON list, e.g. {example}.")
    errors, out = [], []
    for i, item in enumerate(value):
        try:
            out.append(read(item))
        except ValueError as exc:
            errors.append(f"[{i}]: {exc}")
    if errors:
        raise ValidationError(errors)
    return out


class NetworkFileForm(forms.ModelForm):
    """A model form whose fields are checked by the network file loader's own rules (``FIELD_RULES``).

    Django's validators of those fields are dropped: the rule covers what they checked (lengths, ranges,
    formats) and more (the loader's ranges, control characters, whole seconds), so the form refuses what
    a network file refuses, with the loader's message on the field. The model's own checks (unique keys)
    still run after.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.rules():
            if name in self.fields:
                self.fields[name].validators = []

    def rules(self) -> dict[str, Callable[[Any], Any]]:
        return FIELD_RULES[self._meta.model]

    def clean(self) -> dict:
        data = super().clean()
        for name, read in self.rules().items():
            if name in self.fields and name in data:  # not when the field's own parsing failed
                self.check(name, read)
        return data

    def check(self, name: str, read: Callable[[Any], Any]) -> None:
        """Run one of the loader's checks on a field's value; its ``ValueError`` becomes the field's error."""
        try:
            self.cleaned_data[name] = _field_error(read, self.cleaned_data[name])
        except ValidationError as exc:
            self.add_error(name, exc)


class RepeatedKey(ValueError):
    """A JSON object with a key written twice (``json.loads`` would keep the last one, silently)."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise RepeatedKey(f"the key '{key}' is given twice in one object")
        found[key] = value
    return found


def loads_json(text: str) -> Any:
    """``json.loads`` refusing a key given twice in one object (``RepeatedKey``), as the network file
    refuses one in a mapping: ``{"mon": "08:00-10:00", "mon": "09:00-18:00"}`` is a mistake, not the last."""
    return json.loads(text, object_pairs_hook=_no_repeated_keys)


class OptionalJSONField(forms.JSONField):
    """A JSON field that shows "nothing" as an empty box: ``{}``, ``[]`` and ``null`` are not printed.

    Empty input is ``None``; each form's ``clean_<field>`` turns it into the stored empty value. A key
    given twice in one object is refused with a message naming it (see :func:`loads_json`).
    """

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value not in self.empty_values and not self.disabled:
            try:
                loads_json(value)
            except RepeatedKey as exc:
                raise ValidationError(str(exc)[:1].upper() + str(exc)[1:] + ".", code="invalid") from None
            except ValueError:
                pass  # not JSON at all: Django's own message
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        # A refused value is shown again as typed, not as Python's reading of it (one of the keys gone).
        if isinstance(data, str) and not self.disabled:
            try:
                loads_json(data)
            except RepeatedKey:
                return forms.fields.InvalidJSONInput(data)
            except ValueError:
                pass
        return super().bound_data(data, initial)

    def prepare_value(self, value: Any) -> Any:
        if value in (None, {}, [], "null", "{}", "[]"):
            return ""
        return super().prepare_value(value)

    def has_changed(self, initial: Any, data: Any) -> bool:
        if initial in (None, {}, []) and (data is None or str(data).strip() in ("", "null", "{}", "[]")):
            return False
        return super().has_changed(initial, data)


#: One example per JSON field, in the notation of the network file (docs/network-file.md), as JSON.
AREA_HELP = ('JSON, e.g. {"zips": ["78701", "78702"], "radius": [{"zip": "78701", "miles": 15}], '
             '"counties": ["Travis County, TX"], "states": ["TX"], "exclude_zips": ["78719"]}. '
             "Empty: everywhere.")
HOURS_HELP = ('JSON, e.g. {"weekly": {"weekdays": "08:00-18:00", "sat": "09:00-13:00"}, "holidays": "US", '
              '"exceptions": [{"date": "2026-12-24", "hours": "08:00-12:00"}]}. Empty: always open. '
              'Time zone: the buyer\'s unless "timezone" is given.')
PREFIXES_HELP = 'JSON list of number prefixes, e.g. ["+1900", "+1976"]. Empty: none.'
NUMBERS_HELP = 'JSON list of phone numbers (E.164), e.g. ["+15125550199"]. Empty: none.'


class CampaignForm(NetworkFileForm):
    class Meta:
        model = m.Campaign
        fields = "__all__"
        field_classes = {"blocked_numbers": OptionalJSONField, "blocked_prefixes": OptionalJSONField}
        widgets = {"blocked_numbers": forms.Textarea(attrs={"rows": 2, "cols": 80}),
                   "blocked_prefixes": forms.Textarea(attrs={"rows": 2, "cols": 80})}
        help_texts = {"blocked_numbers": NUMBERS_HELP, "blocked_prefixes": PREFIXES_HELP}

    def clean_blocked_numbers(self) -> list[str]:
        return _list_of(parsing.parse_e164, self.cleaned_data.get("blocked_numbers"), '["+15125550199"]')

    def clean_blocked_prefixes(self) -> list[str]:
        return _list_of(parsing.parse_prefix, self.cleaned_data.get("blocked_prefixes"), '["+1900"]')

    def clean(self) -> dict:
        data = super().clean()
        if data.get("fallback_kind") == FallbackChoices.FORWARD and not data.get("fallback_number") \
                and "fallback_number" not in self.errors:
            self.add_error("fallback_number", "A forward fallback needs the number to forward to.")
        if data.get("fallback_number"):  # whatever the kind, as a network file has it
            self.check("fallback_number", not_a_tracking_number)
        return data


class BuyerForm(NetworkFileForm):
    class Meta:
        model = m.Buyer
        fields = "__all__"


class PublisherForm(NetworkFileForm):
    class Meta:
        model = m.Publisher
        fields = "__all__"


class TargetForm(NetworkFileForm):
    """Checks every value as the loader does, the service area against the ZIP directory, and the hours."""

    class Meta:
        model = m.Target
        fields = "__all__"
        field_classes = {"area": OptionalJSONField, "hours": OptionalJSONField,
                         "blocked_prefixes": OptionalJSONField}
        widgets = {
            "area": forms.Textarea(attrs={"rows": 4, "cols": 80}),
            "hours": forms.Textarea(attrs={"rows": 4, "cols": 80}),
            "blocked_prefixes": forms.Textarea(attrs={"rows": 2, "cols": 80}),
        }
        help_texts = {"area": AREA_HELP, "hours": HOURS_HELP, "blocked_prefixes": PREFIXES_HELP}

    def clean_area(self) -> dict:
        from callbroker.core.geo import ZipDirectory

        area = self.cleaned_data.get("area")
        return _field_error(lambda a: parsing.read_area(a, ZipDirectory.default() if a else None)[0], area)

    def clean_hours(self) -> dict | None:
        return _field_error(parsing.normalize_hours, self.cleaned_data.get("hours"))

    def clean_blocked_prefixes(self) -> list[str]:
        return _list_of(parsing.parse_prefix, self.cleaned_data.get("blocked_prefixes"), '["+1900"]')

    def clean(self) -> dict:
        data = super().clean()
        if data.get("number"):
            self.check("number", not_a_tracking_number)
        hours, buyer = data.get("hours"), data.get("buyer")
        if hours and "hours" not in self.errors:
            default_tz = buyer.timezone if buyer else m.Buyer._meta.get_field("timezone").default
            try:
                parsing.parse_hours(hours, default_tz)
            except NetworkError as exc:
                self.add_error("hours", [str(p) for p in exc.problems])
        return data


class TargetInlineForm(TargetForm):
    class Meta(TargetForm.Meta):
        fields = ("key", "campaign", "name", "number", "priority", "weight", "price", "paused")


class TrackingNumberForm(NetworkFileForm):
    class Meta:
        model = m.TrackingNumber
        fields = "__all__"

    def clean(self) -> dict:
        data = super().clean()
        if data.get("number"):  # no target or fallback may dial it, a paused or inactive one neither
            self.check("number", not_dialled)
        return data


# --------------------------------------------------------------------------------------------------
# display helpers
# --------------------------------------------------------------------------------------------------


def _caps(target: m.Target) -> str:
    parts = [f"{value}/{unit}" for value, unit in ((target.hourly_cap, "h"), (target.daily_cap, "day"),
                                                   (target.monthly_cap, "mo")) if value is not None]
    if target.concurrency_limit is not None:
        parts.append(f"{target.concurrency_limit} at once")
    return " · ".join(parts) or "none"


def _auto_pause(state: m.TargetState | None) -> str:
    if state is None or state.paused_until is None or state.paused_until <= timezone.now():
        return "—"
    until = timezone.localtime(state.paused_until).strftime("%Y-%m-%d %H:%M %Z")  # the admin's zone, named
    return f"until {until}" + (f" ({state.pause_reason})" if state.pause_reason else "")


@admin.action(description="Clear the automatic pause (missed-call protection)", permissions=["change"])
def clear_auto_pause_action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    if queryset.model is m.Target:
        queryset = m.TargetState.objects.filter(target__in=queryset)
    cleared = clear_auto_pause(queryset)
    modeladmin.message_user(request, f"Cleared the automatic pause of {cleared} target(s).", messages.SUCCESS)


class DeletesTargetRowsMixin:
    """Deleting a target, or a buyer or campaign with targets, deletes the targets' live state and cap
    counters with them.

    Django's delete page and "delete selected" action ask the admin of every row the deletion cascades to
    whether the user may delete it; ``TargetStateAdmin`` and ``TargetUsageAdmin`` say no (those rows are
    not deleted on their own), which made every target undeletable ("your account doesn't have permission
    to delete … target live state"). They belong to the target and go with it: their names are dropped
    from the permissions needed. Rows that protect (ledger entries, tracking numbers) still do.
    """

    #: Rows owned by a target: deleted with it, never on their own.
    OWNED_BY_TARGET = (m.TargetState, m.TargetUsage)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        owned = {str(model._meta.verbose_name) for model in self.OWNED_BY_TARGET}
        return deleted, counts, {name for name in perms_needed if str(name) not in owned}, protected


class NamesWhatProtectsMixin:
    """A row that something protects (``PROTECT``: a publisher's calls, the ledger entries naming a buyer,
    publisher or campaign) is refused on its delete page by naming the rows that hold it, which staff can look
    up, not by a permission they lack.

    Django's delete page asks the admin of every row it lists whether the user may delete it, the rows that
    protect the object too; ``CallAdmin`` and ``LedgerEntryAdmin`` say no (calls and entries are never
    deleted by hand), so the page said "your account doesn't have permission to delete … ledger entry", as
    if another account could, and named nothing. While any row protects the object
    nothing is deleted whatever the permissions, so those are dropped: the page lists the rows that hold it
    (Django's "would require deleting the following protected related objects"). Once they are gone the
    permissions needed are asked again.
    """

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        held = rows_that_hold(objs, self.model, self.admin_site.name)  # type: ignore[attr-defined]
        if held:
            return [], {}, set(), held
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        return deleted, counts, (set() if protected else perms_needed), protected


#: How many of the rows of one kind that hold an object its delete page names; the rest are counted.
HOLDING_ROWS_NAMED = 20


def rows_that_hold(objs: Any, model: type, site_name: str) -> list[str]:
    """The rows that protect ``objs`` directly (``PROTECT`` foreign keys to ``model``), as the delete page lists
    them: at most :data:`HOLDING_ROWS_NAMED` of each kind, linked, then how many more. Empty when none does.

    Why not Django's own collector for these: it loads every protecting row (``ProtectedError`` holds them all)
    and the page names each, so a publisher with a million calls (``Call.publisher`` is ``PROTECT``) had its
    delete page read a million calls into memory and write a line for each. Rows held deeper (through a row
    that would be deleted in cascade) are still found by the collector, after these: there are few."""
    lines: list[str] = []
    for relation in model._meta.related_objects:
        if relation.on_delete is not PROTECT:
            continue
        rows = relation.related_model._base_manager.filter(**{f"{relation.field.name}__in": objs})
        first = list(rows.order_by("pk")[:HOLDING_ROWS_NAMED + 1])
        if not first:
            continue
        opts = relation.related_model._meta
        for row in first[:HOLDING_ROWS_NAMED]:
            try:
                url = reverse(f"{site_name}:{opts.app_label}_{opts.model_name}_change", args=(quote(row.pk),))
                lines.append(format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, row))
            except NoReverseMatch:
                lines.append(f"{capfirst(opts.verbose_name)}: {row}")
        if len(first) > HOLDING_ROWS_NAMED:
            more = rows.count() - HOLDING_ROWS_NAMED
            lines.append(f"… and {more:,} more {opts.verbose_name if more == 1 else opts.verbose_name_plural}")
    return lines


# --------------------------------------------------------------------------------------------------
# campaigns
# --------------------------------------------------------------------------------------------------


class CampaignTargetInline(admin.TabularInline):
    """The campaign's targets, read-only: edit them on the target or buyer page."""

    model = m.Target
    fk_name = "campaign"
    fields = ("name", "buyer", "number", "priority", "weight", "price_display", "paused", "caps_display")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "targets (edit them on the target or the buyer)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("buyer", "campaign")

    @admin.display(description="price")
    def price_display(self, target: m.Target) -> str:
        return format_money(target.price, target.campaign.currency)

    @admin.display(description="caps")
    def caps_display(self, target: m.Target) -> str:
        return _caps(target)


@admin.register(m.Campaign)
class CampaignAdmin(NamesWhatProtectsMixin, DeletesTargetRowsMixin, SafeChangeListMixin, admin.ModelAdmin):
    form = CampaignForm
    list_display = ("name", "key", "category", "active", "payout_display", "buffer_seconds", "target_count",
                    "fallback_kind")
    list_filter = ("active", "category", "fallback_kind")
    search_fields = ("name", "key", "category")
    readonly_fields = ("created_at", "updated_at")
    inlines = (CampaignTargetInline,)
    fieldsets = (
        ("Basics", {"fields": ("key", "name", "category", "active", "currency", "payout", "buffer_seconds",
                               "duplicate_window", "ring_timeout")}),
        ("Screening", {"fields": ("blocked_numbers", "blocked_prefixes", "velocity_limit", "velocity_window",
                                  "require_attestation")}),
        ("IVR & recording", {"fields": ("ask_zip", "confirm_category", "whisper_text", "recording",
                                        "recording_disclosure", "disclosure_text")}),
        ("Missed-call protection", {"fields": ("missed_calls_limit", "missed_calls_window",
                                               "missed_calls_cooldown"),
                                    "description": "A target missing this many calls inside the window is "
                                                   "paused for the cool-down. 0 disables it."}),
        ("Fallback", {"fields": ("fallback_kind", "fallback_number", "fallback_message"),
                      "description": "What callers get when no target can take the call."}),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(_targets=Count("targets"))

    @admin.display(description="payout", ordering="payout")
    def payout_display(self, campaign: m.Campaign) -> str:
        return format_money(campaign.payout, campaign.currency)

    @admin.display(description="targets", ordering="_targets")
    def target_count(self, campaign: m.Campaign) -> int:
        return campaign._targets


# --------------------------------------------------------------------------------------------------
# buyers and targets
# --------------------------------------------------------------------------------------------------


class BuyerTargetInline(admin.TabularInline):
    """The buyer's targets, editable in rows. A row's campaign list and its heading (the target's name with
    its buyer's) are read once for the page: each row read the campaigns again and loaded its buyer, two
    queries per target (400 for a buyer with 200 lines)."""

    model = m.Target
    fk_name = "buyer"
    form = TargetInlineForm
    fields = TargetInlineForm.Meta.fields
    extra = 0
    show_change_link = True
    verbose_name_plural = "targets (area, hours and caps: open the target)"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("buyer")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        campaign = formset.form.base_fields.get("campaign")
        if campaign is not None:  # a field of this page's form class only: read now, once, for every row
            choices = [choice for choice in campaign.choices]  # noqa: C416 (list() would COUNT them first)
            campaign.choices = choices
            inner = getattr(campaign.widget, "widget", None)  # the admin's wrapper (the + and pencil links)
            if inner is not None:
                inner.choices = choices
        return formset


@admin.register(m.Buyer)
class BuyerAdmin(NamesWhatProtectsMixin, DeletesTargetRowsMixin, SafeChangeListMixin, admin.ModelAdmin):
    form = BuyerForm
    list_display = ("name", "key", "timezone", "email", "active", "target_count")
    list_filter = ("active", "timezone")
    search_fields = ("name", "key", "email")
    inlines = (BuyerTargetInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(_targets=Count("targets"))

    @admin.display(description="targets", ordering="_targets")
    def target_count(self, buyer: m.Buyer) -> int:
        return buyer._targets

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is m.Target:
            ensure_target_states(form.instance.targets.values_list("pk", flat=True))


@admin.register(m.Target)
class TargetAdmin(DeletesTargetRowsMixin, SafeChangeListMixin, SafeAutocompleteMixin, admin.ModelAdmin):
    form = TargetForm
    list_display = ("name", "key", "buyer", "campaign", "number", "priority", "weight", "price_display",
                    "paused", "auto_pause", "live_calls", "caps")
    list_filter = ("campaign", "buyer", "paused")
    search_fields = ("name", "key", "number", "buyer__name", "campaign__name")
    list_select_related = ("buyer", "campaign", "state")
    autocomplete_fields = ("buyer", "campaign")
    actions = (clear_auto_pause_action,)
    fieldsets = (
        (None, {"fields": ("key", "campaign", "buyer", "name", "number", "paused")}),
        ("Ring order and price", {"fields": ("priority", "weight", "price", "min_talk_seconds")}),
        ("Service area", {"fields": ("area", "accepts_unknown_location")}),
        ("Hours", {"fields": ("hours",)}),
        ("Caps", {"fields": ("hourly_cap", "daily_cap", "monthly_cap", "concurrency_limit"),
                  "description": "Empty: unlimited; 0: no calls."}),
        ("Screening", {"fields": ("blocked_prefixes",)}),
    )

    @admin.display(description="price", ordering="price")
    def price_display(self, target: m.Target) -> str:
        return format_money(target.price, target.campaign.currency)

    @admin.display(description="auto-pause")
    def auto_pause(self, target: m.Target) -> str:
        return _auto_pause(getattr(target, "state", None))

    @admin.display(description="live calls")
    def live_calls(self, target: m.Target) -> int:
        state = getattr(target, "state", None)
        return state.active_calls if state else 0

    @admin.display(description="caps")
    def caps(self, target: m.Target) -> str:
        return _caps(target)

    def save_model(self, request: HttpRequest, obj: m.Target, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        ensure_target_states([obj.pk])

    def render_change_form(self, request: HttpRequest, context: dict, add: bool = False, change: bool = False,
                           form_url: str = "", obj: m.Target | None = None) -> Any:
        # After a failed save the form has already copied the typed values onto ``obj``: the heading and
        # the breadcrumbs show the target as it is stored, not the unsaved name.
        if obj is not None and obj.pk and context.get("adminform") and context["adminform"].form.is_bound:
            stored = m.Target.objects.select_related("buyer").filter(pk=obj.pk).first()
            if stored is not None:
                context["subtitle"], context["original"] = str(stored), stored
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(m.TargetState)
class TargetStateAdmin(SafeChangeListMixin, admin.ModelAdmin):
    """Live state, read-only: the call path owns it. The one write is clearing an automatic pause."""

    list_display = ("target", "buyer", "campaign", "active_calls", "auto_paused", "paused_until",
                    "pause_reason")
    list_select_related = ("target__buyer", "target__campaign")
    list_filter = ("target__campaign", "target__buyer")
    search_fields = ("target__name", "target__key", "pause_reason")
    readonly_fields = ("target", "active_calls", "paused_until", "pause_reason")
    actions = (clear_auto_pause_action,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No edit form (obj given: view only), but the "change" action on the list stays allowed.
        return obj is None and super().has_change_permission(request)

    @admin.display(description="buyer", ordering="target__buyer__name")
    def buyer(self, state: m.TargetState) -> str:
        return state.target.buyer.name

    @admin.display(description="campaign", ordering="target__campaign__name")
    def campaign(self, state: m.TargetState) -> str:
        return state.target.campaign.name

    @admin.display(description="auto-paused", boolean=True)
    def auto_paused(self, state: m.TargetState) -> bool:
        return state.paused_until is not None and state.paused_until > timezone.now()


@admin.register(m.TargetUsage)
class TargetUsageAdmin(SafeChangeListMixin, admin.ModelAdmin):
    """Cap counters, read-only.

    One row per target and hour, day and month it took calls, kept until the period is over in every time zone
    three days ago (``cap_counts``): still a row per target and hour of those days, and the rows of a table
    left to grow before that. So a filtered or searched page doesn't count the
    whole table too (Django's "N of M" beside the search box): it counted every row on each such page.
    """

    list_display = ("target", "period", "count")
    list_select_related = ("target__buyer",)
    list_filter = ("target__campaign",)
    search_fields = ("target__name", "target__key", "period")
    show_full_result_count = False  # no COUNT(*) over every counter on each filtered page

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --------------------------------------------------------------------------------------------------
# publishers and tracking numbers
# --------------------------------------------------------------------------------------------------


@admin.register(m.Publisher)
class PublisherAdmin(NamesWhatProtectsMixin, SafeChangeListMixin, admin.ModelAdmin):
    form = PublisherForm
    list_display = ("name", "key", "email", "active", "number_count")
    list_filter = ("active",)
    search_fields = ("name", "key", "email")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(_numbers=Count("tracking_numbers"))

    @admin.display(description="tracking numbers", ordering="_numbers")
    def number_count(self, publisher: m.Publisher) -> int:
        return publisher._numbers


@admin.register(m.TrackingNumber)
class TrackingNumberAdmin(SafeChangeListMixin, SafeAutocompleteMixin, admin.ModelAdmin):
    form = TrackingNumberForm
    list_display = ("number", "label", "campaign", "publisher", "active")
    list_filter = ("campaign", "publisher", "active")
    search_fields = ("number", "label", "campaign__name", "publisher__name")
    list_select_related = ("campaign", "publisher")
    autocomplete_fields = ("campaign", "publisher")
