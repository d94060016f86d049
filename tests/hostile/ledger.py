"""Counters of the hostile-input suite: inputs tried, statuses seen, violations found.

Every request a hostile test sends is counted here (:func:`tried`); every broken invariant is recorded
(:func:`violation`) before the test fails, deduplicated by (endpoint, invariant, where it broke) and
keeping the smallest input — hypothesis replays an input many times while it shrinks it. Known open
issues (strict ``xfail`` tests) are recorded with :func:`known_issue`. ``conftest.py`` prints the
figures at the end of the run and writes them to JSON (see :data:`REPORT_NAME`).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

REPORT_NAME = "hostile-input.json"


@dataclass
class Ledger:
    inputs: Counter = field(default_factory=Counter)  # (channel, endpoint) -> requests sent
    statuses: Counter = field(default_factory=Counter)  # (channel, status) -> responses
    signers: Counter = field(default_factory=Counter)  # signer -> probes
    violations: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    known: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_json(self) -> dict:
        with self.lock:
            channels: Counter = Counter()
            for (channel, _), n in self.inputs.items():
                channels[channel] += n
            return {
                "inputs_tried": sum(self.inputs.values()),
                "inputs_by_channel": dict(channels),
                "inputs_by_endpoint": {f"{c}:{e}": n for (c, e), n in sorted(self.inputs.items())},
                "statuses": {f"{c}:{s}": n for (c, s), n in sorted(self.statuses.items(), key=str)},
                "signers": dict(sorted(self.signers.items())),
                "violations_found": len(self.violations),
                "violations": list(self.violations.values()),
                "known_issues": len(self.known),
                "known_issue_details": list(self.known.values()),
            }


LEDGER = Ledger()


def tried(channel: str, endpoint: str, status: int | None, signer: str = "") -> None:
    with LEDGER.lock:
        LEDGER.inputs[(channel, endpoint)] += 1
        LEDGER.statuses[(channel, "closed" if status is None else status)] += 1
        if signer:
            LEDGER.signers[signer] += 1


def violation(invariant: str, endpoint: str, where: str, detail: dict) -> None:
    """Record a broken invariant (the caller then fails the test)."""
    key = (endpoint, invariant, where)
    record = {"invariant": invariant, "endpoint": endpoint, "where": where, **detail}
    size = len(repr(detail))
    with LEDGER.lock:
        current = LEDGER.violations.get(key)
        if current is None or size < current.get("_size", size + 1):
            LEDGER.violations[key] = {**record, "_size": size}


def known_issue(name: str, detail: dict) -> None:
    """Record a hit of a known open issue (the first example is kept, hits are counted)."""
    with LEDGER.lock:
        current = LEDGER.known.setdefault(name, {"name": name, "hits": 0, **detail})
        current["hits"] += 1
