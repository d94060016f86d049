"""Counts in words for what the commands print and log (``1 call``, ``2 calls``), Django-free so that the
emulator's ``callbroker sim`` uses it too: a count printed as ``1 targets`` reads as a mistake in the
figures, and an operator reading a log line must not have to wonder which one it is."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None, *, grouped: bool = False) -> str:
    """``1 call``, ``0 calls``, ``2,000 calls`` (``grouped``): ``noun`` is the singular; ``plural`` defaults to
    it with an ``s``."""
    number = f"{count:,}" if grouped else f"{count}"
    return f"{number} {noun if count == 1 else plural or noun + 's'}"
