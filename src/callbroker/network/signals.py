"""Bump the network version when any routing-relevant row changes, so every app node reloads."""

from django.db.models import F
from django.db.models.signals import post_delete, post_save

from callbroker.network import models as m


def bump_network_version(**_kwargs) -> None:
    updated = m.NetworkVersion.objects.filter(pk=1).update(version=F("version") + 1)
    if not updated:
        m.NetworkVersion.objects.get_or_create(pk=1, defaults={"version": 1})


for model in (m.Campaign, m.Buyer, m.Target, m.Publisher, m.TrackingNumber):
    post_save.connect(bump_network_version, sender=model, dispatch_uid=f"bump-{model.__name__}-save")
    post_delete.connect(bump_network_version, sender=model, dispatch_uid=f"bump-{model.__name__}-delete")
