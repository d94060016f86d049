from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operator commands: serve, run (the live demo), bench."""

    name = "callbroker.ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        import logging

        from django.conf import settings
        from django.db.backends.signals import connection_created

        from callbroker.ops import health

        # Settings are read before logging is configured: what they took but production refuses is said here,
        # once per process that sets Django up, in the log's own format.
        for warning in settings.START_WARNINGS:
            logging.getLogger("callbroker.settings").warning("%s", warning)

        # /readyz tells a database file deleted or replaced under the server: it remembers which it opened.
        connection_created.connect(health.remember_database_file, dispatch_uid="callbroker-readyz-file")
