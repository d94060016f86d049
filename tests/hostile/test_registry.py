"""The registry finds every carrier endpoint, each has a profile, and the limits cover them all."""

from __future__ import annotations

import pytest
from django.urls import reverse

from callbroker.ops import limits
from tests.hostile.strategies import PROFILES, Endpoint, carrier_endpoints, profile_for

ENDPOINTS = carrier_endpoints()


def test_the_registry_finds_the_carrier_endpoints():
    names = {e.short for e in ENDPOINTS}
    assert {"twilio-voice", "twilio-status", "twilio-dial", "twilio-fallback"} <= names
    assert len(ENDPOINTS) == len({e.name for e in ENDPOINTS})


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.short)
def test_every_carrier_endpoint_has_a_hostile_input_profile(endpoint):
    try:
        profile_for(endpoint)
    except LookupError as exc:
        pytest.fail(str(exc), pytrace=False)


def test_a_new_endpoint_without_a_profile_fails_with_what_to_add():
    with pytest.raises(LookupError, match="add an entry for 'twilio-new' to PROFILES"):
        profile_for(Endpoint(name="carriers:twilio-new", route="twilio/new"))


def test_no_profile_is_left_over_from_a_removed_endpoint():
    assert set(PROFILES) <= {e.short for e in ENDPOINTS}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.short)
def test_the_rate_limits_cover_every_carrier_endpoint(endpoint):
    assert reverse(endpoint.name).startswith(limits.carrier_prefix())
