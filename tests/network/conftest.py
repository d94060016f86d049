"""Fixtures for the network app: a small valid network file to break, and loaders that expect problems."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

import callbroker.network
from callbroker.core.geo import ZipDirectory
from callbroker.network import models as m
from callbroker.network.loader import load_network
from callbroker.network.parsing import NetworkError

DEMO_DIR = Path(callbroker.network.__file__).resolve().parent / "demo"
EXAMPLE_FILE = DEMO_DIR / "example-network.yaml"
DEMO_FILE = DEMO_DIR / "demo-network.yaml"

#: The smallest network that uses every kind of row; tests copy it and break one thing.
BASE_NETWORK = {
    "version": 1,
    "campaigns": [
        {"key": "austin-plumbing", "name": "Austin Plumbing", "category": "plumbing", "payout": "15.00",
         "fallback": {"kind": "message", "message": "Sorry."}},
    ],
    "buyers": [
        {"key": "acme", "name": "ACME Plumbing", "timezone": "America/Chicago", "targets": [
            {"key": "acme-main", "campaign": "austin-plumbing", "name": "Main line", "number": "+15125550150",
             "price": "45.00", "area": {"zips": ["78701", "78702"]},
             "hours": {"weekly": {"weekdays": "08:00-18:00"}}},
            {"key": "acme-overflow", "campaign": "austin-plumbing", "number": "+15125550151", "priority": 2},
        ]},
        {"key": "bolt", "name": "Bolt Rooter", "timezone": "America/Chicago", "targets": [
            {"key": "bolt-main", "campaign": "austin-plumbing", "number": "+15125550152", "price": "40.00"},
        ]},
    ],
    "publishers": [{"key": "metro-search", "name": "Metro Search Ads"}],
    "tracking_numbers": [
        {"number": "+15125550101", "campaign": "austin-plumbing", "publisher": "metro-search",
         "label": "Google"},
    ],
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The default PBKDF2 hasher costs about half a second per login; tests don't need it to be slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def zip_directory() -> ZipDirectory:
    return ZipDirectory.default()


@pytest.fixture
def network() -> dict:
    """A fresh deep copy of :data:`BASE_NETWORK` to change."""
    return copy.deepcopy(BASE_NETWORK)


@pytest.fixture
def problems(zip_directory: ZipDirectory) -> Callable[..., list[str]]:
    """``problems(data) -> ["location: message", …]``; fails the test when the data loads."""

    def run(data: object, **kwargs: object) -> list[str]:
        with pytest.raises(NetworkError) as info:
            load_network(data, directory=zip_directory, **kwargs)
        return [str(p) for p in info.value.problems]

    return run


@pytest.fixture
def load(zip_directory: ZipDirectory) -> Callable[..., object]:
    def run(data: object, **kwargs: object):
        return load_network(data, directory=zip_directory, **kwargs)

    return run


@pytest.fixture
def network_counts() -> Callable[[], dict[str, int]]:
    """``network_counts()`` -> rows per kind, to show that nothing was written."""
    return lambda: {
        "campaigns": m.Campaign.objects.count(),
        "buyers": m.Buyer.objects.count(),
        "targets": m.Target.objects.count(),
        "states": m.TargetState.objects.count(),
        "publishers": m.Publisher.objects.count(),
        "tracking_numbers": m.TrackingNumber.objects.count(),
    }
