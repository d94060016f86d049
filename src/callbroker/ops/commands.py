"""Helpers shared by the operator commands of every area (``callbroker calls``, ``callbroker billing`` …)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import OperationalError, ProgrammingError


@contextmanager
def reading_the_database(what: str) -> Iterator[None]:
    """Turn a database that can't be read (not migrated, not reachable) into one line saying what to do,
    instead of a traceback: ``Cannot read <what> (<the database's words>). Is the database migrated? …``"""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        raise CommandError(f"Cannot read {what} ({exc}). Is the database migrated? Run: callbroker migrate") from exc
