"""The network: who buys calls, who sends them, and the rules in between."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from callbroker.network.choices import AskZip, FallbackChoices

MONEY = {"max_digits": 12, "decimal_places": 2}


class Campaign(models.Model):
    """An offer for one service category in one market (e.g. plumbing in Austin), with its rules."""

    key = models.SlugField("key", max_length=64, unique=True, help_text="Stable name used in network files.")
    name = models.CharField("name", max_length=200)
    category = models.CharField("service category", max_length=100, blank=True)
    active = models.BooleanField("active", default=True)
    currency = models.CharField("currency", max_length=3, default="USD")
    payout = models.DecimalField("publisher payout per billable call", default=Decimal("0.00"),
                                 validators=[MinValueValidator(Decimal("0.00"))], **MONEY)
    buffer_seconds = models.PositiveIntegerField(
        "billable buffer (s)", default=60, help_text="Bridged talk time with the buyer needed to bill."
    )
    duplicate_window = models.DurationField("duplicate window", default=dt.timedelta(days=30))
    ring_timeout = models.PositiveIntegerField("ring timeout per target (s)", default=30,
                                               validators=[MinValueValidator(5)])
    # recording and IVR
    recording = models.BooleanField("record calls", default=True)
    recording_disclosure = models.BooleanField(
        "always play the recording disclosure", default=False,
        help_text="When off, it is still played to callers in all-party-consent states (or unknown location).",
    )
    disclosure_text = models.CharField("disclosure text", max_length=300,
                                       default="This call may be recorded for quality assurance.")
    ask_zip = models.CharField("ask the caller's ZIP", max_length=16, choices=AskZip.choices,
                               default=AskZip.WHEN_MISSING)
    confirm_category = models.CharField(
        "category confirmation prompt", max_length=300, blank=True,
        help_text='E.g. "If you need a plumber, press 1." Empty: not asked.',
    )
    whisper_text = models.CharField("whisper to the buyer", max_length=300, blank=True,
                                    help_text="Said to the buyer before bridging. Empty: 'Call from {campaign}'.")
    # screening
    blocked_numbers = models.JSONField("blocked caller numbers", default=list, blank=True)
    blocked_prefixes = models.JSONField("blocked caller prefixes", default=list, blank=True)
    velocity_limit = models.PositiveIntegerField("calls allowed from one caller in the window", default=5)
    velocity_window = models.DurationField("velocity window", default=dt.timedelta(minutes=10))
    require_attestation = models.BooleanField("require STIR/SHAKEN attestation", default=False)
    # missed-call protection
    missed_calls_limit = models.PositiveIntegerField("missed calls before auto-pause", default=3,
                                                     help_text="0 disables missed-call protection.")
    missed_calls_window = models.DurationField("missed calls window", default=dt.timedelta(hours=1))
    missed_calls_cooldown = models.DurationField("auto-pause cool-down", default=dt.timedelta(minutes=30))
    # fallback
    fallback_kind = models.CharField("fallback", max_length=16, choices=FallbackChoices.choices,
                                     default="message")
    fallback_number = models.CharField("fallback number", max_length=20, blank=True)
    fallback_message = models.CharField(
        "fallback message", max_length=500, blank=True,
        default="Sorry, no one can take your call right now.",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "campaign"

    def __str__(self) -> str:
        return self.name


class Buyer(models.Model):
    """A business that pays for qualified calls."""

    key = models.SlugField("key", max_length=64, unique=True)
    name = models.CharField("name", max_length=200)
    timezone = models.CharField("time zone", max_length=64, default="America/New_York",
                                help_text="IANA name; hours and caps are counted in it.")
    email = models.EmailField("contact email", blank=True)
    active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "buyer"

    def __str__(self) -> str:
        return self.name


class Target(models.Model):
    """One of a buyer's destinations in a campaign: where calls ring, when, from where, how many."""

    key = models.SlugField("key", max_length=64, unique=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="targets",
                                 db_index=False)  # indexed by target_campaign_idx (Meta)
    buyer = models.ForeignKey(Buyer, on_delete=models.CASCADE, related_name="targets")
    name = models.CharField("name", max_length=200)
    number = models.CharField("phone number (E.164)", max_length=20)
    priority = models.PositiveIntegerField("priority", default=1, help_text="Lower rings first.")
    weight = models.PositiveIntegerField("weight", default=1, validators=[MinValueValidator(1)])
    price = models.DecimalField("price per billable call", default=Decimal("0.00"),
                                validators=[MinValueValidator(Decimal("0.00"))], **MONEY)
    min_talk_seconds = models.PositiveIntegerField("buffer override (s)", null=True, blank=True)
    area = models.JSONField(
        "service area", default=dict, blank=True,
        help_text='{"zips": [...], "radius": [{"zip": "78701", "miles": 15}], "counties": [...], '
                  '"states": [...], "exclude_zips": [...]}; empty = anywhere.',
    )
    accepts_unknown_location = models.BooleanField("takes callers whose ZIP is unknown", default=True)
    hours = models.JSONField(
        "business hours", null=True, blank=True,
        help_text='{"weekly": {"weekdays": "08:00-18:00"}, "holidays": "US", "exceptions": [...]}; '
                  "empty = always open.",
    )
    hourly_cap = models.PositiveIntegerField("hourly cap", null=True, blank=True)
    daily_cap = models.PositiveIntegerField("daily cap", null=True, blank=True)
    monthly_cap = models.PositiveIntegerField("monthly cap", null=True, blank=True)
    concurrency_limit = models.PositiveIntegerField("concurrent calls", null=True, blank=True)
    paused = models.BooleanField("paused", default=False)
    blocked_prefixes = models.JSONField("blocked caller prefixes", default=list, blank=True)

    class Meta:
        ordering = ["campaign", "priority", "name"]
        verbose_name = "target"
        indexes = [models.Index(fields=["campaign"], name="target_campaign_idx")]

    def __str__(self) -> str:
        return f"{self.buyer.name} / {self.name}" if self.buyer_id else self.name


class TargetState(models.Model):
    """Live state of a target, changed only by atomic updates on the call path (never by forms)."""

    target = models.OneToOneField(Target, on_delete=models.CASCADE, primary_key=True, related_name="state")
    active_calls = models.IntegerField("calls ringing or connected now", default=0)
    paused_until = models.DateTimeField("auto-paused until", null=True, blank=True)
    pause_reason = models.CharField("auto-pause reason", max_length=200, blank=True)
    counted_without_redis_at = models.DateTimeField(
        "counted without Redis at", null=True, blank=True,
        help_text="Last time a slot was taken or given back in the database while Redis was unreachable, or a "
                  "call was counted again after its final status came before its bridged Dial result: Redis's "
                  "counters of this target are stale until they are rebuilt from the database.")

    class Meta:
        verbose_name = "target live state"
        constraints = [
            models.CheckConstraint(condition=models.Q(active_calls__gte=0), name="targetstate_active_nonneg"),
        ]

    def __str__(self) -> str:
        return f"state of {self.target_id}"


class TargetUsage(models.Model):
    """Calls delivered to a target in one hour/day/month of the buyer's local time (for caps)."""

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="usage",
                               db_index=False)  # targetusage_unique_period (target, period) serves it
    period = models.CharField("period", max_length=16, help_text="H2026112714, D20261127 or M202611")
    count = models.PositiveIntegerField("calls", default=0)

    class Meta:
        verbose_name = "target usage"
        constraints = [models.UniqueConstraint(fields=["target", "period"], name="targetusage_unique_period")]


class Publisher(models.Model):
    """A traffic source (ads, listings, sites) paid per qualified call."""

    key = models.SlugField("key", max_length=64, unique=True)
    name = models.CharField("name", max_length=200)
    email = models.EmailField("contact email", blank=True)
    active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "publisher"

    def __str__(self) -> str:
        return self.name


class TrackingNumber(models.Model):
    """A number a publisher shows; it identifies the campaign and the traffic source of a call."""

    number = models.CharField("number (E.164)", max_length=20, unique=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="tracking_numbers")
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="tracking_numbers")
    label = models.CharField("label", max_length=200, blank=True)
    active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["number"]
        verbose_name = "tracking number"

    def __str__(self) -> str:
        return f"{self.number} ({self.label})" if self.label else self.number


class NetworkVersion(models.Model):
    """A single row whose counter goes up whenever the network changes; app nodes reload on change."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "network version"
