"""Choices of the network app: stable codes stored in the database, labels for people."""

from django.db import models


class AskZip(models.TextChoices):
    NEVER = "never", "Never ask"
    WHEN_MISSING = "when_missing", "Ask when the carrier gave no usable ZIP"
    ALWAYS = "always", "Always ask"


class FallbackChoices(models.TextChoices):
    """Mirrors ``callbroker.core.model.FallbackKind``."""

    MESSAGE = "message", "Say a message with the opening hours"
    FORWARD = "forward", "Forward to a fallback number"
    VOICEMAIL = "voicemail", "Take a voicemail"
    CALLBACK = "callback", "Capture a next-day callback request"
