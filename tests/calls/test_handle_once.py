"""``services.handle_once`` for the inbound call: the idempotency check and the network version read together.

The voice webhook reads the stored answer (a repeated delivery) and the network version in one statement
and hands the version to ``prepare``, which routes with the snapshot of that version: a network change
committed before the call must route it, and a retry must read the version again.
"""

from __future__ import annotations

import itertools

import pytest
from django.db import OperationalError
from django.db.models import F

from callbroker.calls import services
from callbroker.calls.events import EventIn, InboundCall
from callbroker.calls.models import Call
from callbroker.network import models as m
from callbroker.network.snapshot import current_snapshot

from tests.calls.conftest import PLUMBING

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

_sids = itertools.count(1)


def deliver(sid: str, seen: list, fail_first: bool = False) -> str:
    """The voice webhook as the view hands it over, recording the version each ``prepare`` is given."""
    inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550123", to=PLUMBING,
                          from_zip="78701", from_state="TX")
    failures = [OperationalError("database is locked")] if fail_first else []

    def prepare(version):
        seen.append(version)
        return services.prepare_call(inbound, network_version=version)

    def run(commit):
        if failures:
            raise failures.pop()
        return commit()

    event = EventIn(call_sid=sid, kind="voice", dedupe_key=f"{sid}:voice", params={"CallSid": sid})
    return services.handle_once(event, run, repr, prepare=prepare)


def version() -> int:
    return m.NetworkVersion.objects.get(pk=1).version


def test_prepare_gets_the_version_in_the_database_and_routes_with_its_snapshot():
    seen = []
    deliver(f"CA{next(_sids):032x}", seen)
    assert seen == [version()] and current_snapshot(check_version=False).version == version()

    # Someone changes the network between two calls (another process: this one's snapshot is now stale).
    m.NetworkVersion.objects.filter(pk=1).update(version=F("version") + 1)
    sid = f"CA{next(_sids):032x}"
    deliver(sid, seen)
    assert seen[-1] == version() and current_snapshot(check_version=False).version == version()
    assert Call.objects.filter(call_sid=sid).exists()


def test_a_repeated_delivery_answers_from_the_log_without_preparing_again():
    sid, seen = f"CA{next(_sids):032x}", []
    first = deliver(sid, seen)
    assert deliver(sid, seen) == first
    assert seen == [version()]  # prepared once: the second delivery found the stored answer
    assert Call.objects.filter(call_sid=sid).count() == 1


def test_a_retry_reads_the_version_again():
    sid, seen = f"CA{next(_sids):032x}", []
    deliver(sid, seen, fail_first=True)  # "database is locked": transient, retried
    assert seen == [version(), None]
    assert Call.objects.filter(call_sid=sid).exists()
