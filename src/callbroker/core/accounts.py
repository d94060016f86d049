"""Carrier account SIDs: one way to read them, wherever an account is named or compared.

A webhook names its account in ``AccountSid``: Twilio as ``AC`` and 32 lower-case hex characters, SignalWire
(a project's ID) and Telnyx as a lower-case UUID. An operator copies the same account from a console, a
spreadsheet or an old configuration, in upper or mixed case; compared as written, such a copy refused every
webhook of its account. ``TWILIO_ACCOUNT_SID``, ``TWILIO_ACCOUNT_TOKENS``, the webhook's ``AccountSid`` and
``callbroker sim`` all read an account with :func:`account_sid`, so that the same account is the same text
everywhere. What is stored (``Call.account_sid``) stays as the carrier sent it.
"""

from __future__ import annotations

import re

__all__ = ["SHAPES", "account_sid", "account_sids", "is_account_sid", "is_twilio_account_sid"]

#: What an account SID looks like, for the messages that refuse one.
SHAPES = "Twilio: AC and 32 hex characters; SignalWire, Telnyx: a UUID"

# ASCII classes written out: re.IGNORECASE would also take letters of other scripts that fold to ASCII ones.
_TWILIO = re.compile(r"[Aa][Cc][0-9a-fA-F]{32}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def account_sid(text: str) -> str:
    """``text`` as the carrier sends the account it names: a Twilio SID as ``AC`` and lower-case hex, a UUID in
    lower case; anything else (of no account's shape) unchanged, compared as it is.

    Two spellings of one account compare equal once read here, and two accounts never do: only the case of
    hex digits and of the ``AC`` prefix changes, which no carrier uses to tell accounts apart."""
    if _TWILIO.fullmatch(text):
        return "AC" + text[2:].lower()
    if _UUID.fullmatch(text):
        return text.lower()
    return text


def is_account_sid(text: str) -> bool:
    """True when ``text`` has the shape of an account SID (:data:`SHAPES`), in any case."""
    return bool(_TWILIO.fullmatch(text) or _UUID.fullmatch(text))


def is_twilio_account_sid(text: str) -> bool:
    """True when ``text`` is a Twilio account SID (``AC`` and 32 hex characters), in any case: an account
    verified by an auth token. A UUID (SignalWire, Telnyx) is not one, even one that begins with ``ac``."""
    return bool(_TWILIO.fullmatch(text))


def account_sids(setting: str) -> tuple[str, ...]:
    """The accounts of a comma-separated setting (``TWILIO_ACCOUNT_SID``), each read with :func:`account_sid`,
    in their order, each once; blanks around and between entries ignored."""
    accounts = (account_sid(part.strip()) for part in setting.split(","))
    return tuple(dict.fromkeys(account for account in accounts if account))
