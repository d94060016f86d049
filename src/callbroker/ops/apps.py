from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operator commands: serve, run (the live demo), bench."""

    name = "callbroker.ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from callbroker.ops import health

        # /readyz tells a database file deleted or replaced under the server: it remembers which it opened.
        connection_created.connect(health.remember_database_file, dispatch_uid="callbroker-readyz-file")
