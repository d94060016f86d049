"""A buyer's cap usage for a leg dialled from memory does not depend on the order of its callbacks (review22).

Given the e2e IVR campaign, whose roofer has a daily cap, and a caller whose category answer was handled in
degraded mode (the database away: the roofer dialled from memory, the webhook spooled, replayed later), when
the roofer's Dial action and the call's final status come in any order — each handled live on a node whose
database is back, or from memory and replayed — then the roofer's cap counts the call once if the roofer
talked, and not at all if he didn't: caps count delivered calls. With SQL counters (or Redis away too during
the outage) degraded mode takes no unit; with Redis counters it takes one under its hold. All end the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.utils import timezone

from callbroker.calls import spool
from callbroker.network import live
from callbroker.network.models import Target, TargetUsage
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.calls.test_degraded_ivr import IVR, ROOFER, carrier, over  # noqa: F401 - the fixture
from tests.services import free_port

# Live hourly and daily counts read back right after a unit is taken (see the fixture).
pytestmark = pytest.mark.usefixtures("clear_of_the_hour")

ORDERS = {
    # name: what happens after the category answer, in turn. "live": on a node whose database is back and
    # which spooled nothing of the call; "memory": during the outage, on the node that spooled the call;
    # "replay": that node's replay of what it spooled so far (it replays the rest once the call is over).
    "dial action first": ("replay", "dial live", "status live"),
    "final status first": ("replay", "status live", "dial live"),
    "final status first, before the replay": ("status live", "replay", "dial live"),
    "final status from memory first": ("status memory", "replay", "dial live"),
    "both from memory, dial action first": ("dial memory", "status memory"),
    "both from memory, final status first": ("status memory", "dial memory"),
}


class Counters:
    """The counters backend of the test, and the roofer's cap usage as the next reservation sees it."""

    def __init__(self, mode: str, carrier, settings) -> None:  # noqa: F811 - the fixture's value
        self.mode, self.carrier, self.settings = mode, carrier, settings
        self.roofer = next(t for t in current_snapshot().targets.values() if t.core.number == ROOFER)
        self.url = settings.REDIS_URL

    def outage(self, down: bool) -> None:
        """The database away (or back); with ``redis, both away`` Redis is out of reach meanwhile too."""
        self.carrier.down = down
        if self.mode == "redis, both away":
            self.settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0" if down else self.url

    def units(self) -> int:
        """The roofer's calls in today's cap once the call is over (Redis: no hold left, no unit kept)."""
        if self.mode == "sql":
            usage = TargetUsage.objects.filter(target_id=self.roofer.core.id)
            return sum(usage.values_list("count", flat=True))
        store = live.store_without_database()
        assert not store.client.exists(store.holds_key(self.roofer.core.id))
        seen = self.seen()
        assert seen.active == 0
        return seen.day

    def seen(self):
        """The roofer's Redis counters as the next reservation sees them: recounted from the attempts first
        when the target was marked for it."""
        target, tz = self.roofer.core, self.roofer.timezone
        store, now = live.store_without_database(), timezone.now()
        live.read([target], {target.id: tz}, now)  # a marked target is forgotten …
        if not store.client.exists(store.known_key(target.id)):
            live.rebuild_from_database(store, target, tz)  # … and rebuilt by the next reservation
        return store.read([target], {target.id: tz}, now, unknown_as_empty=False)[target.id]


@pytest.fixture(params=["sql", "redis", "redis, both away"])
def counters(request, carrier, settings, monkeypatch):  # noqa: F811 - the fixture
    """The roofer with a daily cap; with Redis counters, Redis knowing his counters (as after any call)."""
    Target.objects.filter(number=ROOFER).update(daily_cap=50)
    reset_snapshot()
    if request.param != "sql":
        settings.REDIS_URL = request.getfixturevalue("redis_server").url
        settings.COUNTERS_BACKEND = "redis"
        settings.REDIS_KEY_PREFIX = f"usage-{uuid.uuid4().hex[:8]}:"
        monkeypatch.setattr(live, "REBUILD_GRACE_S", 0)
    counters = Counters(request.param, carrier, settings)
    if request.param != "sql":
        roofer = counters.roofer
        live.rebuild_from_database(live.store_without_database(), roofer.core, roofer.timezone)
    return counters


def play(carrier, counters, settings, tmp_path, order: str, *, talked: bool,  # noqa: F811 - the fixtures
         connected: Callable[[], None] = lambda: None):
    """The caller answers the category question during an outage (the roofer dialled from memory), then the
    roofer's Dial action and the final status come in ``order`` (``connected`` called after a Dial action
    handled live before the final status); returns the call once it is over."""
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    carrier.voice(call)
    question = carrier.zip(call, "80203")
    counters.outage(True)
    answer = carrier.answer(question, call, "1")
    counters.outage(False)
    assert ROOFER in answer
    ended = False
    for step in ORDERS[order]:
        if step == "replay":
            carrier.replay()
            continue
        webhook, where = step.split()
        counters.outage(where == "memory")
        settings.DATA_DIR = tmp_path / ("b" if where == "live" else "a")
        if webhook == "status":
            carrier.ended(call, 150)
            ended = True
        elif talked:
            carrier.bridged(answer, call, 120)
        else:
            carrier.unanswered(answer, call)
        counters.outage(False)
        assert where == "memory" or spool.files() == []  # handled live, not from memory
        settings.DATA_DIR = tmp_path / "a"
        if webhook == "dial" and where == "live" and not ended:
            connected()
    return over(carrier, call)


@pytest.mark.parametrize("order", list(ORDERS))
def test_a_leg_dialled_from_memory_not_answered_counts_nothing_whatever_the_order(
        carrier, counters, settings, tmp_path, order):  # noqa: F811 - the fixtures
    """Until the fix, with Redis counters, a final status handled from memory kept the leg's unit (its outcome
    unknown then), and nothing gave it back when the leg turned out not delivered: the cap counted it."""
    ended = play(carrier, counters, settings, tmp_path, order, talked=False)
    assert (ended.attempts.get().result, ended.verdict) == ("no-answer", "not_billable")
    assert counters.units() == 0


@pytest.mark.parametrize("order", list(ORDERS))
def test_a_leg_dialled_from_memory_that_talked_counts_once_whatever_the_order(
        carrier, counters, settings, tmp_path, order):  # noqa: F811 - the fixtures
    """Until the fix, with SQL counters (or Redis away too), such a leg was counted only when the final
    status came first (the cap then counted it again: ``live.count_again``), never when the Dial action did.
    A leg whose hold in Redis counts its unit is not counted again: recounted from the attempts (where a
    replayed leg holds no slot), the line would look free while the buyer talks."""

    def connected() -> None:
        if counters.mode == "redis":
            assert counters.seen().active == 1  # the hold still counts the call in progress

    ended = play(carrier, counters, settings, tmp_path, order, talked=True, connected=connected)
    assert (ended.attempts.get().result, ended.verdict) == ("bridged", "billable")
    assert counters.units() == 1
