"""Hypothesis-generated hostile webhooks against every carrier endpoint, in process (Django test client).

Each endpoint of the registry gets ``CALLBROKER_HOSTILE_EXAMPLES`` inputs (100 by default; derandomized,
so every run tries the same ones) checked against the invariants of ``tests/hostile/checks.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.hostile import checks
from tests.hostile.strategies import carrier_endpoints, hostile_settings, probe_for, profile_for

ENDPOINTS = carrier_endpoints()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.short)
def test_hostile_webhooks_never_fail_and_never_change_state_unsigned(endpoint, carrier_world):
    try:
        profile = profile_for(endpoint)
    except LookupError as exc:
        pytest.fail(str(exc), pytrace=False)

    @hostile_settings()
    @given(probe=probe_for(endpoint, profile, carrier_world.target))
    def run(probe):
        checks.exercise(carrier_world.client, probe, writes=profile.writes, spools=profile.spools)

    run()
