"""What the core needs from the outside world, as ``typing.Protocol`` classes the shell implements.

The core never reaches for a clock or a counter itself: callers pass them in, tests pass fakes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Protocol

from callbroker.core.model import TargetCounters


class CounterStore(Protocol):
    """Live per-target counters, kept atomically by the shell (database rows or a cache).

    Routing reads a :meth:`snapshot`; the dialler then takes a concurrency slot with
    :meth:`try_acquire` before ringing a target (so two calls cannot both take the last slot),
    gives it back with :meth:`release` when the leg ends, and counts the call with
    :meth:`record_routed` for the hourly, daily and monthly caps.
    """

    def snapshot(self, target_ids: Iterable[int]) -> Mapping[int, TargetCounters]:
        """Current counters for these targets; a target missing from the result has all zeros."""
        ...

    def try_acquire(self, target_id: int, limit: int | None) -> bool:
        """Atomically take one concurrency slot if fewer than ``limit`` are in use.

        ``limit=None`` is unlimited (always succeeds, still counted); ``limit=0`` never succeeds.
        Return ``True`` when the slot was taken; the caller must :meth:`release` it later.
        """
        ...

    def release(self, target_id: int) -> None:
        """Give back a slot taken with :meth:`try_acquire` (never drops below zero)."""
        ...

    def record_routed(self, target_id: int, at: dt.datetime) -> None:
        """Count one call routed to the target at ``at`` (aware) towards its hour/day/month caps."""
        ...


class Clock(Protocol):
    """Where "now" comes from; production uses the system clock, tests a fixed or stepping one."""

    def now(self) -> dt.datetime:
        """The current time as an aware ``datetime``."""
        ...
