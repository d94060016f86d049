"""Command-line option types shared by the commands (``callbroker run``) and the emulator's
``callbroker sim``, which runs without Django: a number out of range, or an empty value, is refused by
argparse in one line naming the option."""

from __future__ import annotations

import argparse
import math
from urllib.parse import urlsplit


def at_least(lowest: float, kind: type = float):
    """An argparse type: a ``kind`` number not below ``lowest``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{text} is below {lowest:g}")
        return value
    return parse


def above_zero(text: str) -> float:
    """An argparse type: a number of calls per second, more than 0 (and finite)."""
    value = at_least(-math.inf)(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} calls per second: give a rate above 0, e.g. 0.5")
    return value


def given(what: str, kind: type = str):
    """An argparse type: a ``kind`` value from text that is not empty (nor only spaces), else refused saying
    ``what`` to give. An empty value (a script's unset variable) must not pass for a missing option, which
    means a default (``--token ""`` signed with the demo's token), nor for a path (``--network ""``, the
    current directory)."""
    def parse(text: str):
        if not text.strip():
            raise argparse.ArgumentTypeError(f"it is empty: give {what}")
        return kind(text)
    return parse


def web_address(what: str):
    """An argparse type: an ``http://`` or ``https://`` address with a host (and a port that is one), else
    refused saying ``what`` to give. ``--url example.com`` or ``--url 127.0.0.1:8000`` would place every call
    and fail each one at its first webhook, with no scheme to reach."""
    check = given(what)

    def parse(text: str) -> str:
        address = check(text)
        try:
            parts = urlsplit(address.strip())
            usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a port that is no number, or out of range
            usable = False
        if not usable:
            raise argparse.ArgumentTypeError(f"{address!r} is not an http:// or https:// address: give {what}")
        return address.strip()
    return parse
