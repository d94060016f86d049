from django.apps import AppConfig


class NetworkConfig(AppConfig):
    name = "callbroker.network"
    verbose_name = "Network"

    def ready(self) -> None:
        from callbroker.network import signals  # noqa: F401  (bumps the network version on change)
