"""The admin's change lists, for every area: a filter no date can meet is a bad lookup, not a 500.

Django turns a lookup it can't apply (``?price=abc``) into a redirect to the list with ``?e=1``, but only
when the error comes while the filters are applied. A date filter outside the calendar fails later:
``?created_at__year=0`` (or ``99999``, ``-1``) when the query is compiled, as the page renders, and the
date hierarchy's ``?started_at__year=9999`` (or ``…&started_at__month=12``) when Django works out the
end of that year or month — ``ValueError: year 10000 is out of range``, ``OverflowError``: a 500 for a
hand-made URL. :class:`ChangeList` compiles the query while the filters are applied, so both are answered
like any other bad lookup. Every ModelAdmin of ours uses it through :class:`SafeChangeListMixin`, and so
do Django's user and group admins, registered again with it in ``ops/admin.py``.

The same change list gives the date hierarchy of the calls and the ledger (the years or months above the
list, each a link) without reading every row. Django lists them with ``SELECT DISTINCT`` of every row's date
truncated to the year or month: the whole table read on every page that shows no day or month yet, the
first page of the list included (on SQLite, which truncates each row's time in Python, 0.2-0.3 s for 50,000
calls; on PostgreSQL 0.1 s for 200,000; growing with the months kept). :class:`DatesByProbe` asks instead,
for each year or month between the first and the last date of the list, whether one row falls in it: all in
one query, each ``EXISTS`` a range of the date's index, stopping at its first row (or going on over the rows
a filter leaves out). The links shown are the same. The days of a month are still Django's query: it
reads that month's rows only. Lists whose date leads no index (attempts, events: none on purpose, one more
B-tree per webhook) keep Django's query too: without an index, the probe of a month with no rows would read
the whole table.

The mixin also checks the rows an action is asked for (``_selected_action``, the list's checkboxes) before
Django filters by them: a value that is no id (``abc``, ``1.5``, a number too large for the column, from a
hand-made or tampered form) failed as the action read its rows (``ValueError: Field 'id' expected a
number``), a 500 for every action, ``delete_selected`` included. Such a request now does nothing and
says so on the list, as an action posted with no row selected does.

A search term holding a NUL character matches nothing. PostgreSQL refuses one in a query
(``DataError: PostgreSQL text fields cannot contain NUL (0x00) bytes``): the list's own search box refuses it
through Django's form, but the autocomplete lookup behind a target's buyer and campaign or a tracking
number's campaign and publisher (``/admin/autocomplete/?term=…``) passed it on, a 500. Finding nothing is
what such a term finds anyway: PostgreSQL stores no NUL, and the admin's forms and the network file refuse
control characters. A list's filter holding one (``?category=a%00b``, ``?call_sid=%00``, a hand-made URL) is
a bad lookup (a redirect with ``?e=1``, as the search box's refusal): it reached PostgreSQL too, a 500.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views import main
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db.models import DateTimeField, Exists, QuerySet, UniqueConstraint
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

#: Beyond this many years between a list's first and last date, Django's own query (one read of the table) is
#: asked instead of so many probes (a list's months are at most 12).
MOST_PROBES = 40


def _periods(first: dt.datetime, last: dt.datetime, kind: str) -> list[dt.datetime]:
    """The start of each year or month from ``first``'s to ``last``'s (naive, local times)."""
    if kind == "year":
        return [dt.datetime(year, 1, 1) for year in range(first.year, last.year + 1)]
    count = (last.year - first.year) * 12 + last.month - first.month + 1
    return [dt.datetime(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1)
            for i in range(max(count, 0))]


def _next_period(start: dt.datetime, kind: str) -> dt.datetime:
    if kind == "year":
        return start.replace(year=start.year + 1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def leads_an_index(model: type, name: str) -> bool:
    """Whether a plain index (or unique key) of ``model``'s table starts with the column of field ``name``."""
    field = model._meta.get_field(name)
    if field.db_index or field.unique:
        return True
    leading = [index.fields[0] for index in model._meta.indexes if index.fields and index.condition is None]
    leading += [constraint.fields[0] for constraint in model._meta.constraints
                if isinstance(constraint, UniqueConstraint) and constraint.fields and constraint.condition is None]
    return any(first.lstrip("-") == name for first in leading)


class DatesByProbe(QuerySet):
    """A list's query whose ``datetimes()`` (what the date hierarchy asks) looks for a row in each year or
    month between the first and the last date instead of truncating every row's date (see the module
    docstring). Same answer as Django's: the periods holding at least one row, as aware datetimes of the
    current time zone, in ascending order. Only for a date that leads an index (:func:`leads_an_index`)."""

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None) -> Any:
        if kind not in ("year", "month") or order != "ASC" or tzinfo is not None:
            return super().datetimes(field_name, kind, order, tzinfo)
        dated = self.filter(**{f"{field_name}__isnull": False})
        first = dated.order_by(field_name).values_list(field_name, flat=True).first()  # the index's ends
        if first is None:
            return []
        last = dated.order_by(f"-{field_name}").values_list(field_name, flat=True).first()
        zone = timezone.get_current_timezone()
        first, last = (timezone.localtime(value, zone).replace(tzinfo=None) for value in (first, last))
        try:
            periods = [(start, _next_period(start, kind)) for start in _periods(first, last, kind)]
        except (ValueError, OverflowError):  # a date in the calendar's last year (9999): no period after it
            periods = []
        if not periods or len(periods) > MOST_PROBES:
            return super().datetimes(field_name, kind, order, tzinfo)
        starts = [timezone.make_aware(start, zone) for start, _ in periods]
        # One query: a row of the table (there is one: ``first``), with one EXISTS per period.
        probes = {f"in_{number}": Exists(dated.filter(**{f"{field_name}__gte": since,
                                                          f"{field_name}__lt": timezone.make_aware(end, zone)}))
                  for number, (since, (_, end)) in enumerate(zip(starts, periods))}
        held = self.model._base_manager.order_by().annotate(**probes).values(*probes)[:1].get()
        return [since for number, since in enumerate(starts) if held[f"in_{number}"]]


_PROBING: dict[type, type] = {}


def dates_by_probe(queryset: QuerySet) -> QuerySet:
    """``queryset`` (a copy), its class given :class:`DatesByProbe`'s ``datetimes()``; its rows the same."""
    cls = type(queryset)
    if not issubclass(cls, DatesByProbe):
        cls = _PROBING.setdefault(cls, type(f"DatesByProbe{cls.__name__}", (DatesByProbe, cls), {}))
    queryset = queryset.all()
    queryset.__class__ = cls
    return queryset


class ChangeList(main.ChangeList):
    """Django's change list, whose query is compiled before the page renders, and whose date hierarchy reads
    no whole table where its date is indexed (see the module docstring)."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        if any("\x00" in value for values in self.get_filters_params().values() for value in values):
            # PostgreSQL refuses it in a query (DataError, a 500); no row holds one (see the module docstring)
            raise IncorrectLookupParameters("a filter's value holds a NUL character")
        try:
            queryset = super().get_queryset(request, exclude_parameters)
            try:
                queryset.query.sql_with_params()  # no database work: the SQL only, with the dates' bounds
            except EmptyResultSet:  # a filter nothing can match (an empty IN list): a valid, empty list
                pass
        except (ValueError, OverflowError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        if self.date_hierarchy and "__" not in self.date_hierarchy \
                and isinstance(self.model._meta.get_field(self.date_hierarchy), DateTimeField) \
                and leads_an_index(self.model, self.date_hierarchy):
            queryset = dates_by_probe(queryset)
        return queryset


class SafeChangeListMixin:
    """A ModelAdmin whose change list is :class:`ChangeList` and whose actions take only rows' ids."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[main.ChangeList]:
        return ChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Django's, except that a term holding a NUL character matches nothing (see the module docstring)."""
        if "\x00" in search_term:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponseBase | None:
        """Django's, once every selected value is an id of this table; else nothing done, one message (Django
        then sends the browser back to the list)."""
        key = self.model._meta.pk
        while key.is_relation:  # a primary key that is a one-to-one link (a target's live state): the id it holds
            key = key.target_field
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                key.run_validators(key.to_python(value))
            except (ValidationError, TypeError, ValueError, OverflowError):
                self.message_user(request, f"{value!r} is not the id of a {self.model._meta.verbose_name}: "
                                           "no action was taken.", messages.ERROR)
                return None
        return super().response_action(request, queryset)


#: The periods a list of a log without a date index may be narrowed to (newest first: what staff look for).
RECENT_PERIODS = (("1h", "Last hour", dt.timedelta(hours=1)), ("24h", "Last 24 hours", dt.timedelta(days=1)),
                  ("7d", "Last 7 days", dt.timedelta(days=7)), ("30d", "Last 30 days", dt.timedelta(days=30)))


def first_id_since(queryset: QuerySet, field_name: str, since: dt.datetime) -> int | None:
    """The first id of ``queryset``'s table whose row's ``field_name`` is at or after ``since``, found by
    halving the range of ids (one primary key look-up each: about 17 for 150,000 rows), for a time that
    leads no index. Ids grow as rows are written, and a row's time is when it was written, but for a row
    written late with its own, older time (an event replayed from the spool keeps the moment the carrier
    posted it): around such rows the answer may be a few rows off, and such a row written after the moment is
    kept whatever its time. ``None``: no row that recent found."""
    rows = queryset.model._base_manager.order_by("pk").values_list("pk", field_name)
    ends = rows.first(), rows.reverse().first()
    if ends[0] is None:
        return None
    low, high, first = ends[0][0], ends[1][0], None
    while low <= high:
        middle = (low + high) // 2
        found, at = rows.filter(pk__gte=middle).first()  # there is one: the last row
        if at >= since:
            first, high = found, middle - 1  # the first such row is this one, or before middle
        else:
            low = found + 1
    return first


def since_first_id(field_name: str) -> Callable[[QuerySet, dt.datetime], QuerySet]:
    """For :func:`recent_filter`: the rows written since the first one whose ``field_name`` (leading no index) is
    at or after the moment (:func:`first_id_since`), a range of the primary key."""

    def narrow(queryset: QuerySet, since: dt.datetime) -> QuerySet:
        first = first_id_since(queryset, field_name, since)
        return queryset.none() if first is None else queryset.filter(pk__gte=first)

    return narrow


def recent_filter(title: str, narrow: Callable[[QuerySet, dt.datetime], QuerySet]) -> type:
    """A list filter (``?recent=1h``) keeping the rows of the last hour, day, week or month
    (:data:`RECENT_PERIODS`): ``narrow(queryset, since)``, which must keep to a range of an index (the lists
    it serves have no date index: :func:`since_first_id`)."""

    class RecentFilter(admin.SimpleListFilter):
        parameter_name = "recent"

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(key, label) for key, label, _ in RECENT_PERIODS]

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            period = {key: length for key, _, length in RECENT_PERIODS}.get(self.value() or "")
            return queryset if period is None else narrow(queryset, timezone.now() - period)

    RecentFilter.title = title
    return RecentFilter
