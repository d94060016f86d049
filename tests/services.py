"""Private PostgreSQL and Redis servers for the tests, on loopback, in a temporary directory.

`make test` starts them itself when the Debian packages are installed (`.ci/run` installs them).
Outside CI a missing server skips the tests that need it; in CI (`CI=true`) it fails them: CI may not
skip a test for a missing service.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from callbroker.ops.local_services import (  # noqa: F401 - the tests import them from here
    PostgresServer,
    RedisServer,
    free_port,
    start_redis,
)
from callbroker.ops.local_services import start_postgres as _start_postgres

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str) -> None:
    """Skip outside CI, fail in CI."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (.ci/run installs it)", pytrace=False)
    pytest.skip(f"{what} is not installed (apt-get install postgresql redis-server; .ci/run does it)")


def start_postgres(base: Path) -> PostgresServer | None:
    """A private PostgreSQL for the tests: fast, not durable (fsync off)."""
    return _start_postgres(base, durable=False)
