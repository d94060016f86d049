import os

from django.apps import AppConfig


#: Set by ``callbroker serve`` for the server it hands over to: the start's warnings were said.
START_WARNINGS_SAID = "CALLBROKER_START_WARNINGS_SAID"


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
        # in the log's own format; once a start: `callbroker serve` said it before it handed over to gunicorn,
        # which sets Django up again (and a gunicorn started afresh later, with the variable gone, says it).
        if os.environ.pop(START_WARNINGS_SAID, None) is None:
            for warning in settings.START_WARNINGS:
                logging.getLogger("callbroker.settings").warning("%s", warning)

        # /readyz tells a database file deleted or replaced under the server: it remembers which it opened.
        connection_created.connect(health.remember_database_file, dispatch_uid="callbroker-readyz-file")
