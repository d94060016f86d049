from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def ensure_call_partitions(sender, using: str, verbosity: int = 1, **kwargs) -> None:
    """After ``migrate`` on PostgreSQL, make sure this month's and the next months' partitions exist."""
    if connections[using].vendor != "postgresql":
        return
    from callbroker.calls import partitions

    created = partitions.ensure(using=using)
    if created and verbosity >= 1:
        print(f"  Created call partitions: {', '.join(created)}")  # noqa: T201 - migrate's own output style


class CallsConfig(AppConfig):
    name = "callbroker.calls"
    verbose_name = "Calls"

    def ready(self) -> None:
        post_migrate.connect(ensure_call_partitions, sender=self, dispatch_uid="callbroker.calls.partitions")
