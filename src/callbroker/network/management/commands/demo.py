"""``callbroker demo``: the demo network and an admin user, ready to click through (idempotent)."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from callbroker.core.money import format_money
from callbroker.network import models as m
from callbroker.network.loader import load_network

ADMIN_USERNAME = "admin"
DEFAULT_ADMIN_PASSWORD = "callbroker"  # noqa: S105 - the documented demo password
PASSWORD_ENV = "CALLBROKER_ADMIN_PASSWORD"


def demo_network_file() -> resources.abc.Traversable:
    """The packaged demo network (``callbroker/network/demo/demo-network.yaml``)."""
    return resources.files("callbroker.network") / "demo" / "demo-network.yaml"


class Command(BaseCommand):
    help = "Load the demo network and create the admin user (running it again changes nothing)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.migrate_if_needed()
        self.refuse_the_public_password_in_production()
        with resources.as_file(demo_network_file()) as path:
            report = load_network(path)
        self.stdout.write("Demo network:" if report.changed
                          else "Demo network (already loaded, nothing changed):")
        for line in report.lines():
            self.stdout.write(f"  {line}")
        self.ensure_admin()
        self.describe()

    def migrate_if_needed(self) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            self.stdout.write("Creating the database tables …")
            call_command("migrate", interactive=False, verbosity=0)

    def refuse_the_public_password_in_production(self) -> None:
        """With ``CALLBROKER_ENV=production`` the admin is public (the proxy serves ``/admin/``) and
        ``callbroker`` is printed in the README: a superuser with it would be anyone's. So there the
        command writes nothing unless the admin exists or ``CALLBROKER_ADMIN_PASSWORD`` gives another
        password (it created ``admin`` / ``callbroker`` on a production database)."""
        if not settings.PRODUCTION:
            return
        given = os.environ.get(PASSWORD_ENV)
        if given == DEFAULT_ADMIN_PASSWORD:
            raise CommandError(f"{PASSWORD_ENV}: '{DEFAULT_ADMIN_PASSWORD}' is the demo's public password; with "
                               "CALLBROKER_ENV=production give another. The demo network was not loaded.")
        if not given and not get_user_model().objects.filter(username=ADMIN_USERNAME).exists():
            raise CommandError(f"{PASSWORD_ENV} is not set: with CALLBROKER_ENV=production the admin user is not "
                               f"created with the demo's public password '{DEFAULT_ADMIN_PASSWORD}'. Set it, or "
                               "create the user first (callbroker createsuperuser). The demo network was not loaded.")

    def ensure_admin(self) -> None:
        """The admin user, with the password ``CALLBROKER_ADMIN_PASSWORD`` gives (set again when the user
        exists: the variable is an instruction), else ``callbroker`` for a new user."""
        users = get_user_model()
        given = os.environ.get(PASSWORD_ENV)
        user = users.objects.filter(username=ADMIN_USERNAME).first()
        if user is not None:
            if given and not user.check_password(given):
                user.set_password(given)
                user.save(update_fields=["password"])
                self.stdout.write(f"Admin user '{ADMIN_USERNAME}': password set to the value of {PASSWORD_ENV}.")
            else:
                self.stdout.write(f"Admin user '{ADMIN_USERNAME}' exists; its password was not changed.")
            return
        password = given or DEFAULT_ADMIN_PASSWORD
        users.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
        shown = f"the value of {PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else password
        # By name: under the path of CALLBROKER_PUBLIC_URL (/cb/admin/, the command's script prefix) when it has one.
        self.stdout.write(f"Created the admin user: {ADMIN_USERNAME} / {shown}  (sign in at {reverse('admin:index')})")

    def describe(self) -> None:
        self.stdout.write("")
        campaigns = m.Campaign.objects.filter(active=True).prefetch_related(
            "targets__buyer", "tracking_numbers__publisher").order_by("name")
        for campaign in campaigns:
            targets = list(campaign.targets.all())
            self.stdout.write(
                f"{campaign.name} ({campaign.key}): {len(targets)} targets, payout "
                f"{format_money(campaign.payout, campaign.currency)}, buffer {campaign.buffer_seconds} s, "
                f"fallback {campaign.fallback_kind}")
            for number in campaign.tracking_numbers.all():
                if number.active:
                    self.stdout.write(f"    call {number.number}  {number.publisher.name}: {number.label}")
