"""Figures the reliability and hostile-input suites report (printed at the end of the run).

Each suite records a section; the root conftest prints them all in the terminal summary and writes
them to ``var/test-figures.json`` (docs/reliability.md quotes them).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

_lock = threading.Lock()
_figures: dict[str, dict] = {}
PATH = Path(os.environ.get("CALLBROKER_FIGURES_FILE", "var/test-figures.json"))


def record(section: str, values: dict) -> None:
    """Add (or add up) figures under ``section``; numbers are summed across calls."""
    with _lock:
        current = _figures.setdefault(section, {})
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key in current:
                current[key] += value
            else:
                current[key] = value


def all_figures() -> dict[str, dict]:
    with _lock:
        return {k: dict(v) for k, v in _figures.items()}


def write() -> Path | None:
    figures = all_figures()
    if not figures:
        return None
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(json.dumps(figures, indent=2, sort_keys=True))
    return PATH
