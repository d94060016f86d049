"""The admin's autocomplete fields, for every area: a choice that is no key redisplays the form, not a 500.

A form whose autocomplete field (a target's buyer and campaign, a tracking number's campaign and publisher)
is posted with a value that is no key of the other table (``abc``, ``1.5``, a number too large for the
column) is refused by the form ("Select a valid choice"), as it should be. The page that shows that error
then renders the field with the value posted, and Django's ``AutocompleteSelect`` looks the value up in
the database to show its label: ``Field 'id' expected a number but got 'abc'`` (or SQLite's overflow), a
500 for a hand-made POST by staff. :class:`AutocompleteSelect` leaves such values out of that lookup, so
the field is shown empty beside its error. Every ModelAdmin of ours with ``autocomplete_fields`` uses it
through :class:`SafeAutocompleteMixin`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import widgets
from django.core.exceptions import ValidationError


class AutocompleteSelect(widgets.AutocompleteSelect):
    """Django's autocomplete widget, looking up only the values its related field can hold."""

    def optgroups(self, name: str, value: list[str], attr: dict | None = None) -> list:
        return super().optgroups(name, [v for v in value if self.can_be_a_key(v)], attr)

    def can_be_a_key(self, value: Any) -> bool:
        """True when ``value`` is empty or a value of the column the foreign key points to (an integer in
        the column's range, for an ``id``)."""
        if value in self.choices.field.empty_values:
            return True
        remote = self.field.remote_field
        key = remote.model._meta.get_field(getattr(remote, "field_name", None) or remote.model._meta.pk.name)
        while key.is_relation:  # a key that is itself a link to another table: the id it holds
            key = key.target_field
        try:
            key.run_validators(key.to_python(value))
        except (ValidationError, TypeError, ValueError, OverflowError):
            return False
        return True


class SafeAutocompleteMixin:
    """A ModelAdmin whose ``autocomplete_fields`` use :class:`AutocompleteSelect`."""

    def formfield_for_foreignkey(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = AutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
