from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operator commands: serve, run (the live demo), bench."""

    name = "callbroker.ops"
    verbose_name = "Operations"
