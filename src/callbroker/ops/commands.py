"""Helpers shared by the operator commands of every area (``callbroker calls``, ``callbroker billing`` …)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import OperationalError, ProgrammingError


def _not_migrated(words: str) -> bool:
    """SQLite's or PostgreSQL's way of saying a table is missing (the database answers: it isn't migrated),
    not that the database itself is ("database "cb" does not exist": migrate wouldn't help)."""
    return "no such table" in words or ("relation" in words and "does not exist" in words)


def _which_database() -> str:
    """For SQLite, which file was read: it lies under ``CALLBROKER_DATA_DIR``, ``./var`` of the current
    directory by default, so a command run from another directory reads (and makes) another, empty one."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return ""
    return (f" (the database read is {connection.settings_dict['NAME']}: CALLBROKER_DATA_DIR, by default ./var "
            "under the current directory)")


@contextmanager
def reading_the_database(what: str, doing: str = "read", done: str = "") -> Iterator[None]:
    """Turn a database that can't be read (not migrated, not reachable) into one line saying what to do,
    instead of a traceback: ``Cannot read <what> (<the database's words>). Is the database migrated? …``,
    or ``… Is the database reachable? …`` when it didn't answer. ``doing``: what the command was doing, for
    one that writes (``Cannot judge calls …``): "read" would send the operator to look for a reading fault.
    ``done``: what a command of several steps did before this one (``calls closed: 2``), said as
    ``Already done: …``, so a later step failing isn't taken for the first (nothing done)."""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        words = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        if _not_migrated(words):
            advice = f"Is the database migrated? Run: callbroker migrate{_which_database()}"
        else:
            advice = "Is the database reachable (DATABASE_URL)?"
        already = f" Already done: {done}." if done else ""
        raise CommandError(f"Cannot {doing} {what} ({words}).{already} {advice}") from exc
