from django.apps import AppConfig


class CarriersConfig(AppConfig):
    name = "callbroker.carriers"
    verbose_name = "Carriers"
