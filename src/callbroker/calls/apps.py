from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "callbroker.calls"
    verbose_name = "Calls"
