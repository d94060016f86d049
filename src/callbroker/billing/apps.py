from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "callbroker.billing"
    verbose_name = "Billing"
