"""The admin's change lists, for every area: a filter no date can meet is a bad lookup, not a 500.

Django turns a lookup it can't apply (``?price=abc``) into a redirect to the list with ``?e=1``, but only
when the error comes while the filters are applied. A date filter outside the calendar fails later:
``?created_at__year=0`` (or ``99999``, ``-1``) when the query is compiled, as the page renders, and the
date hierarchy's ``?started_at__year=9999`` (or ``…&started_at__month=12``) when Django works out the
end of that year or month — ``ValueError: year 10000 is out of range``, ``OverflowError``: a 500 for a
hand-made URL. :class:`ChangeList` compiles the query while the filters are applied, so both are answered
like any other bad lookup. Every ModelAdmin of ours uses it through :class:`SafeChangeListMixin`, and so
do Django's user and group admins, registered again with it in ``ops/admin.py``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views import main
from django.core.exceptions import EmptyResultSet
from django.db.models import QuerySet
from django.http import HttpRequest


class ChangeList(main.ChangeList):
    """Django's change list, whose query is compiled before the page renders (see the module docstring)."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        try:
            queryset = super().get_queryset(request, exclude_parameters)
            try:
                queryset.query.sql_with_params()  # no database work: the SQL only, with the dates' bounds
            except EmptyResultSet:  # a filter nothing can match (an empty IN list): a valid, empty list
                pass
        except (ValueError, OverflowError) as exc:
            raise IncorrectLookupParameters(exc) from exc
        return queryset


class SafeChangeListMixin:
    """A ModelAdmin whose change list is :class:`ChangeList`."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[main.ChangeList]:
        return ChangeList
