"""Django's own user and group admin, with the change list every admin list of ours has.

``django.contrib.auth`` registers ``User`` and ``Group`` with its own ModelAdmins, whose change lists
answered 500 on a hand-made date filter out of the calendar (``/admin/auth/user/?date_joined__year=0``).
They are registered again here with :class:`~callbroker.ops.admin_lists.SafeChangeListMixin`, which turns
such a filter into a bad lookup (a redirect with ``?e=1``) as on our own lists. Everything else is
Django's. This module is imported after ``django.contrib.auth``'s (``ops`` comes later in
``INSTALLED_APPS``), so theirs are registered by then.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User

from callbroker.ops.admin_lists import SafeChangeListMixin


class UserAdmin(SafeChangeListMixin, auth_admin.UserAdmin):
    """Staff accounts: Django's user admin, with a change list that takes no date for a 500."""


class GroupAdmin(SafeChangeListMixin, auth_admin.GroupAdmin):
    """Staff groups: Django's group admin, with a change list that takes no date for a 500 (groups have no
    date of their own today; a lookup through a relation is refused by Django, but a list of ours
    must not depend on that)."""


admin.site.unregister(User)
admin.site.register(User, UserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, GroupAdmin)
