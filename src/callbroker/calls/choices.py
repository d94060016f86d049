"""Choices of the calls app. Reason and exclusion codes come from the core enums."""

from django.db import models


class CallStage(models.TextChoices):
    """Where a call is in its life; only moves forward."""

    IVR = "ivr", "In IVR"
    DIALING = "dialing", "Ringing a buyer"
    CONNECTED = "connected", "Talking to a buyer"
    FALLBACK = "fallback", "In fallback"
    ENDED = "ended", "Ended"


class IvrPrompt(models.TextChoices):
    """The IVR question a call waits for an answer to: an answer to any other is stray and changes nothing.
    The ZIP prompt's number is ``Call.zip_attempts``.

    Not recorded: a call written before 2026-12-07, or by the previous release during a rolling restart (the
    database's default); its question is read from its ZIP and ``zip_attempts`` as then."""

    NOT_RECORDED = "", "Not recorded"
    NONE = "none", "None"
    ZIP = "zip", "ZIP code"
    CATEGORY = "category", "Category confirmation"


class CallerStatus(models.TextChoices):
    VALID = "valid", "Valid number"
    ANONYMOUS = "anonymous", "Anonymous / withheld"
    INVALID = "invalid", "Invalid number"


class ZipSourceChoices(models.TextChoices):
    """Mirrors ``callbroker.core.model.ZipSource``."""

    IVR = "ivr", "Typed by the caller"
    CARRIER = "carrier", "From the carrier"
    AREA_CODE = "area_code", "Guessed from the area code"
    UNKNOWN = "unknown", "Unknown"


class Verdict(models.TextChoices):
    PENDING = "pending", "Pending"
    BILLABLE = "billable", "Billable"
    NOT_BILLABLE = "not_billable", "Not billable"


class AttemptResult(models.TextChoices):
    RINGING = "ringing", "Ringing"
    BRIDGED = "bridged", "Connected"
    DECLINED = "declined", "Answered, not bridged"
    NO_ANSWER = "no-answer", "No answer"
    BUSY = "busy", "Busy"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Caller hung up"


class Outcome(models.TextChoices):
    """What the buyer says happened, recorded after the call."""

    NONE = "", "Not recorded"
    BOOKED = "booked", "Booked"
    PAYING_CUSTOMER = "paying_customer", "Paying customer"
    NOT_BOOKED = "not_booked", "Not booked"
    WRONG_CATEGORY = "wrong_category", "Wrong category"
    OUT_OF_AREA = "out_of_area", "Out of area"
    SPAM = "spam", "Spam"


class EventKind(models.TextChoices):
    """Every kind of ``CallEvent`` the code writes: the carrier's webhooks, as live or replayed from the spool,
    and what the call path, the sweep and staff record of their own. The event log's "kind" filter offers these,
    not a ``SELECT DISTINCT`` of the whole log (tests/calls/test_event_log_admin.py checks that every kind the
    code writes is here)."""

    VOICE = "voice", "Inbound call (voice)"
    IVR_ZIP = "ivr_zip", "IVR: ZIP typed"
    IVR_CATEGORY = "ivr_category", "IVR: category confirmed"
    DIAL = "dial", "Dial action (a leg ended)"
    STATUS = "status", "Status callback"
    RECORDING = "recording", "Recording ready"
    VOICEMAIL = "voicemail", "Voicemail"
    FALLBACK = "fallback", "Fallback (replayed from the spool)"
    ABANDONED = "abandoned", "Closed by the sweep (final status never came)"
    STATUS_ONLY = "status_only", "Recorded from its final status alone"
    JUDGED_BY_STAFF = "judged_by_staff", "Judged not billable by staff"
