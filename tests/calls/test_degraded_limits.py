"""Degraded mode keeps the limits when the database is away and Redis is not.

Given the e2e network with Redis counters, when the database is unreachable (every webhook's database
work fails), then calls are still answered from memory, and a target's concurrency limit is taken and
given back in Redis: a second caller is not put through to a busy one-line buyer, repeated webhooks
take and give back nothing twice, and after the replay every call is recorded once, the slots are all
back and no limit was exceeded. With Redis away too, callers are still connected and the decision says
the limits were not enforced. With Redis alone away, calls take the normal path and the limits are
counted in the database.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from django.db import OperationalError
from django.test import Client, RequestFactory
from twilio.request_validator import RequestValidator

from callbroker.calls import degraded, replay, services, spool
from callbroker.calls.models import Call
from callbroker.calls.presenters import call_to_dict
from callbroker.carriers import views as carrier_views
from callbroker.network import live
from callbroker.network.loader import load_network
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from callbroker.ops import limits as rate_limits
from callbroker.ops.audit import limit_violations
from tests.services import free_port

# Live hourly and daily counts read back right after a unit is taken (see the fixture).
pytestmark = pytest.mark.usefixtures("clear_of_the_hour")

E2E_NETWORK = Path(__file__).resolve().parents[1] / "e2e" / "network.yaml"
TOKEN = "degraded-test-token"
PUBLIC = "https://cb.test"
SOLO_NUMBER, SOLO_LINE = "+15125550005", "+15125550121"  # a buyer with one line: concurrency 1
REAL_HANDLE_ONCE = services.handle_once  # the world fixture replaces it with an outage


class Carrier:
    """Signed webhooks through the test client, as the carrier sends them."""

    def __init__(self) -> None:
        self.client = Client(raise_request_exception=False)
        self.validator = RequestValidator(TOKEN)

    def post(self, path: str, params: dict[str, str], query: str = "") -> str:
        full = path + (f"?{query}" if query else "")
        response = self.client.post(full, data=urlencode(params), content_type="application/x-www-form-urlencoded",
                                    headers={"X-Twilio-Signature": self.validator.compute_signature(PUBLIC + full,
                                                                                                    params)})
        assert response.status_code == 200, response.content[:300]
        return response.content.decode()

    def voice(self, sid: str, to: str = SOLO_NUMBER) -> str:
        return self.post("/carriers/twilio/voice", base(sid, to))

    def dial(self, sid: str, seq: int, *, bridged: bool, talk: int = 0, to: str = SOLO_NUMBER) -> str:
        status = "completed" if bridged else "no-answer"
        params = {**base(sid, to), "DialCallStatus": status, "DialCallSid": "CA" + uuid.uuid4().hex,
                  "DialCallDuration": str(talk), "DialBridged": "true" if bridged else "false"}
        campaign = current_snapshot(check_version=False).tracking[to].campaign_id
        return self.post("/carriers/twilio/dial", params, f"seq={seq}&c={campaign}")

    def ended(self, sid: str, duration: int, to: str = SOLO_NUMBER) -> str:
        return self.post("/carriers/twilio/status", {**base(sid, to), "CallStatus": "completed",
                                                     "CallDuration": str(duration), "SequenceNumber": "0"})


def base(sid: str, to: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "7" * 32, "From": f"+1512444{int(sid[-4:], 16) % 10000:04d}",
            "To": to, "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701"}


def sid() -> str:
    return "CA" + uuid.uuid4().hex


@pytest.fixture
def world(transactional_db, settings, tmp_path, redis_server, monkeypatch):
    """The e2e network, Redis counters under a fresh prefix, and a database that fails every webhook
    (``monkeypatch.undo()`` brings it back)."""
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_AUTH_TOKENS_EXTRA = []
    settings.PUBLIC_URL = PUBLIC
    settings.DATA_DIR = tmp_path
    settings.FALLBACK_NUMBER = "+15125550999"
    settings.REDIS_URL = redis_server.url
    settings.COUNTERS_BACKEND = "redis"
    settings.REDIS_KEY_PREFIX = f"degraded-{uuid.uuid4().hex[:8]}:"
    reset_snapshot()
    rate_limits.reset()
    load_network(E2E_NETWORK)
    carrier = Carrier()
    # Before the outage a call goes through normally: the node knows the network, Redis the counters.
    before = sid()
    assert "+15125550101" in carrier.voice(before, to="+15125550001")
    carrier.ended(before, 5, to="+15125550001")

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused (the test's outage)")

    # The database is away: every webhook's database work fails, and nothing can be replayed.
    monkeypatch.setattr(services, "handle_once", database_down)
    monkeypatch.setattr(replay, "replay_now", lambda call_sid: None)
    yield carrier
    monkeypatch.undo()
    reset_snapshot()
    rate_limits.reset()


def solo_counters():
    store = live.store_without_database()
    solo = next(t for t in current_snapshot(check_version=False).targets.values() if t.core.number == SOLO_LINE)
    return store.read([solo.core], {solo.core.id: solo.timezone}, solo_now())[solo.core.id]


def solo_active() -> int:
    return solo_counters().active


def cap_the_solo_line_hourly() -> None:
    """The solo line: concurrency 1, and an hourly cap of 5 whose units the tests read back."""
    load_network({"version": 1,
                  "buyers": [{"key": "solo", "name": "Solo Heating", "timezone": "America/Chicago", "targets": [
                      {"key": "solo-line", "campaign": "e2e-concurrency", "name": "Only line",
                       "number": SOLO_LINE, "price": "25.00", "caps": {"concurrency": 1, "hourly": 5}}]}]})


def solo_now():
    from django.utils import timezone

    return timezone.now()


def test_degraded_routing_takes_and_gives_back_the_slots_in_redis(world, monkeypatch):
    a, b, c = sid(), sid(), sid()
    first = world.voice(a)
    assert SOLO_LINE in first and solo_active() == 1
    assert world.voice(a) == first and solo_active() == 1  # delivered twice: the same answer, one slot
    busy = world.voice(b)
    assert SOLO_LINE not in busy and "The line is busy." in busy  # the one line is taken: the fallback
    world.dial(a, 1, bridged=False)
    world.dial(a, 1, bridged=False)
    assert solo_active() == 0  # given back once
    world.ended(a, 40)
    world.ended(b, 8)

    assert SOLO_LINE in world.voice(c)
    world.dial(c, 1, bridged=True, talk=95)
    assert solo_active() == 1  # connected: held until the call ends
    world.ended(c, 110)
    world.ended(c, 110)
    assert solo_active() == 0

    monkeypatch.undo()  # the database is back
    report = replay.replay_ready()
    assert (report.calls, report.errors) == (3, [])
    assert spool.files() == []
    calls = {call.call_sid: call_to_dict(call) for call in Call.objects.all()}
    assert {a, b, c} <= set(calls) and len(calls) == 4  # and the call before the outage
    assert [x["result"] for x in calls[a]["attempts"]] == ["no-answer"]
    assert calls[b]["attempts"] == [] and calls[b]["fallback_applied"] == "message"
    assert "concurrency_full" in {e["code"] for e in calls[b]["decision"]["excluded"]}
    assert calls[c]["verdict"] == "billable" and calls[a]["verdict"] == calls[b]["verdict"] == "not_billable"
    network = yaml.safe_load(E2E_NETWORK.read_text())
    assert limit_violations(network, calls.values()) == []
    store = live.store_without_database()
    assert list(store.client.scan_iter(match=f"{store.prefix}{{c:*")) == []  # plans forgotten


def test_with_redis_away_too_callers_are_connected_and_limits_not_enforced(world, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    a, b = sid(), sid()
    assert SOLO_LINE in world.voice(a)
    assert SOLO_LINE in world.voice(b)  # limits unknown: connected rather than dropped
    events = spool.read(spool.directory() / f"{b}.jsonl")
    assert events[0]["decision"]["limits"] == "unenforced"


def test_with_only_redis_away_calls_take_the_normal_path_and_the_limits_are_counted_in_the_database(
        world, monkeypatch, settings):
    monkeypatch.undo()  # the database is up
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # Redis is not
    a, b = sid(), sid()
    assert SOLO_LINE in world.voice(a)
    assert SOLO_LINE not in world.voice(b)  # the one line is busy: counted from a's attempt in the database
    assert spool.files() == []  # nothing went to degraded mode
    call = call_to_dict(Call.objects.get(call_sid=a))
    assert [x["number"] for x in call["attempts"]] == [SOLO_LINE]
    assert call["decision"]["limits_counted_in_database"] and not call["decision"]["degraded"]
    world.dial(a, 1, bridged=True, talk=70)
    world.ended(a, 80)
    assert Call.objects.get(call_sid=a).verdict == "billable"
    assert SOLO_LINE in world.voice(sid())  # the line is free again


@pytest.mark.parametrize("status_first", [False, True])
def test_a_caller_who_hangs_up_while_a_line_rings_is_recorded_the_same_replayed_or_live(world, monkeypatch,
                                                                                          status_first):
    """The carrier reports the ringing leg ``canceled`` and the call completed, in either order: no one
    else is rung, and the replayed call's attempts are those of the same webhooks handled live."""
    plumbing = "+15125550001"

    def play(call_sid: str) -> tuple[str, list[tuple[str, str]]]:
        answer = world.voice(call_sid, to=plumbing)
        action = html.unescape(re.search(r'action="[^"?]*\?([^"]*)"', answer).group(1))
        canceled = {**base(call_sid, plumbing), "DialCallStatus": "canceled", "DialCallSid": "CA" + uuid.uuid4().hex,
                    "DialCallDuration": "0", "DialBridged": "false"}
        if status_first:
            world.ended(call_sid, 12, to=plumbing)
        dial_answer = world.post("/carriers/twilio/dial", canceled, action)
        if not status_first:
            world.ended(call_sid, 12, to=plumbing)
        return dial_answer, answer

    degraded_sid = sid()
    dial_answer, first = play(degraded_sid)  # the database is away
    assert "+15125550101" in first and "<Dial" not in dial_answer
    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().errors == []
    live_sid = sid()
    dial_answer, _ = play(live_sid)
    assert "<Dial" not in dial_answer

    def attempts(call_sid: str) -> list[tuple[str, str]]:
        return [(a["number"], a["result"]) for a in call_to_dict(Call.objects.get(call_sid=call_sid))["attempts"]]

    assert attempts(degraded_sid) == attempts(live_sid) == [("+15125550101", "canceled")]


def test_a_reservation_whose_reply_timed_out_gives_its_hold_back(world, monkeypatch):
    """Redis ran the reservation but its reply was lost (a timeout): nothing remembers that hold, so it is
    given back at once by its name; the line isn't left one slot short after the call."""
    import redis

    store = live.store_without_database()
    real = store.reserve

    def reply_lost(*args, **kwargs):
        real(*args, **kwargs)  # the script ran in Redis …
        raise redis.TimeoutError("Timeout reading from socket")  # … and the reply came too late

    timing_out = pytest.MonkeyPatch()
    timing_out.setattr(store, "reserve", reply_lost)
    a = sid()
    try:
        assert SOLO_LINE in world.voice(a)  # the caller is still put through (limits not enforced)
    finally:
        timing_out.undo()
    assert solo_active() == 0
    world.dial(a, 1, bridged=False)
    world.ended(a, 20)
    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().errors == []
    assert solo_active() == 0
    assert SOLO_LINE in world.voice(sid())  # the one-line buyer takes the next call


def test_a_leg_routed_before_the_outage_gives_its_line_back_when_it_ends_during_it(world, monkeypatch):
    """A call reached the one-line buyer while the database was up (a slot named by the call, in Redis);
    the database goes away and the leg ends unanswered: the slot is given back then, so the next caller
    gets the line, instead of at the replay. The replay gives nothing back twice."""
    down = services.handle_once
    up = pytest.MonkeyPatch()
    up.setattr(services, "handle_once", REAL_HANDLE_ONCE)
    a = sid()
    try:
        answer = world.voice(a)  # routed live
    finally:
        up.undo()
    assert services.handle_once is down and SOLO_LINE in answer and solo_active() == 1
    action = html.unescape(re.search(r'action="[^"?]*\?([^"]*)"', answer).group(1))
    assert "t=" in action  # the target rung is in the Dial action's URL
    unanswered = {**base(a, SOLO_NUMBER), "DialCallStatus": "no-answer", "DialCallSid": "CA" + uuid.uuid4().hex,
                  "DialCallDuration": "0", "DialBridged": "false"}
    world.post("/carriers/twilio/dial", unanswered, action)  # the database is away: degraded mode
    assert solo_active() == 0
    world.post("/carriers/twilio/dial", unanswered, action)  # delivered twice: given back once
    world.ended(a, 25)

    b = sid()
    assert SOLO_LINE in world.voice(b)  # the line is free again during the outage
    assert solo_active() == 1  # b holds it, still ringing when the database comes back

    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().errors == []
    assert solo_active() == 1  # a's replayed dial action gave nothing back a second time
    calls = {call.call_sid: call_to_dict(call) for call in Call.objects.filter(call_sid__in=[a, b])}
    assert [x["result"] for x in calls[a]["attempts"]] == ["no-answer"]
    assert [x["number"] for x in calls[b]["attempts"]] == [SOLO_LINE]


@pytest.mark.parametrize("started_long_ago", [False, True])
def test_a_leg_routed_before_the_outage_gives_its_cap_unit_back_only_when_it_surely_started_in_this_hour(
        world, monkeypatch, started_long_ago):
    """Not delivered, so its hourly cap unit goes back, counted in now's hour; when the leg may have
    started in an earlier hour (the ring timeout plus ``LEG_SLACK`` ago), the unit is kept instead:
    one unit too many, never one too few. So for a Dial action URL written before 2026-12-08, without the
    periods counted (``u``, taken off here): one that carries them gives back those (the test below)."""
    cap_the_solo_line_hourly()
    monkeypatch.setattr(degraded, "LEG_SLACK", dt.timedelta(days=400) if started_long_ago else dt.timedelta(0))
    moment = solo_now()
    if not started_long_ago and moment.minute == 0 and moment.second < 40:  # the ring timeout is 30 s
        time.sleep(41 - moment.second)
    up = pytest.MonkeyPatch()
    up.setattr(services, "handle_once", REAL_HANDLE_ONCE)
    a = sid()
    try:
        answer = world.voice(a)  # routed live: one unit of the hourly cap
    finally:
        up.undo()
    assert solo_counters().hour == 1
    action = html.unescape(re.search(r'action="[^"?]*\?([^"]*)"', answer).group(1))
    action = re.sub(r"&u=[^&]*", "", action)  # as the previous release wrote it
    world.post("/carriers/twilio/dial", {**base(a, SOLO_NUMBER), "DialCallStatus": "busy", "DialCallDuration": "0",
                                         "DialCallSid": "CA" + uuid.uuid4().hex, "DialBridged": "false"}, action)
    assert (solo_counters().active, solo_counters().hour) == (0, 1 if started_long_ago else 0)


def solo_line_caps(caps: dict) -> None:
    """The solo line with ``caps`` (a network load, as ``cap_the_solo_line_hourly``)."""
    load_network({"version": 1,
                  "buyers": [{"key": "solo", "name": "Solo Heating", "timezone": "America/Chicago", "targets": [
                      {"key": "solo-line", "campaign": "e2e-concurrency", "name": "Only line",
                       "number": SOLO_LINE, "price": "25.00", "caps": caps}]}]})


def test_a_leg_routed_before_the_outage_gives_back_only_the_cap_units_it_took_when_a_cap_was_added_while_it_rang(
        world, monkeypatch):
    """Call a reaches the line with room for three and no hourly cap (no hourly unit taken); a network load
    adds ``hourly: 1`` while it rings and call b takes the hour's unit; the database goes away and a's leg
    ends unanswered. Its release in degraded mode gave back the units of the caps the line had then, so
    b's hourly unit: the line, capped at one call an hour, took another. It gives back those its
    reservation counted (carried in the Dial action's URL, ``u=``): none."""
    monkeypatch.setattr(degraded, "LEG_SLACK", dt.timedelta(0))  # the leg surely started in this hour
    moment = solo_now()
    if moment.minute == 0 and moment.second < 40:  # the ring timeout is 30 s
        time.sleep(41 - moment.second)
    solo_line_caps({"concurrency": 3})
    up = pytest.MonkeyPatch()
    up.setattr(services, "handle_once", REAL_HANDLE_ONCE)
    a, b = sid(), sid()
    try:
        answer = world.voice(a)  # routed live: no hourly cap, no hourly unit
        solo_line_caps({"concurrency": 3, "hourly": 1})
        assert SOLO_LINE in world.voice(b)  # routed live: the hour's unit
    finally:
        up.undo()
    assert SOLO_LINE in answer and (solo_counters().active, solo_counters().hour) == (2, 1)
    action = html.unescape(re.search(r'action="[^"?]*\?([^"]*)"', answer).group(1))
    world.post("/carriers/twilio/dial", {**base(a, SOLO_NUMBER), "DialCallStatus": "no-answer",
                                         "DialCallDuration": "0", "DialCallSid": "CA" + uuid.uuid4().hex,
                                         "DialBridged": "false"}, action)  # the database is away
    assert (solo_counters().active, solo_counters().hour) == (1, 1)  # b's unit stands
    assert SOLO_LINE not in world.voice(sid())  # one call an hour: b's


def test_a_dial_action_whose_counted_periods_are_no_periods_gives_back_as_before_and_says_so(world, monkeypatch,
                                                                                             caplog):
    """A ``u`` that names no cap periods (hand-made, or cut) is read as absent, in a log line naming it: the
    leg's units are worked out from the line's caps now, as before, the caller's ring never cut short."""
    cap_the_solo_line_hourly()
    monkeypatch.setattr(degraded, "LEG_SLACK", dt.timedelta(0))
    moment = solo_now()
    if moment.minute == 0 and moment.second < 40:  # the ring timeout is 30 s
        time.sleep(41 - moment.second)
    up = pytest.MonkeyPatch()
    up.setattr(services, "handle_once", REAL_HANDLE_ONCE)
    a = sid()
    try:
        answer = world.voice(a)
    finally:
        up.undo()
    action = html.unescape(re.search(r'action="[^"?]*\?([^"]*)"', answer).group(1))
    assert re.search(r"&u=H[0-9]{10}(&|$)", action)  # the hourly cap's unit, the only one the line has
    action = re.sub(r"&u=[^&]*", "&u=H99.D1", action)
    world.post("/carriers/twilio/dial", {**base(a, SOLO_NUMBER), "DialCallStatus": "busy", "DialCallDuration": "0",
                                         "DialCallSid": "CA" + uuid.uuid4().hex, "DialBridged": "false"}, action)
    assert (solo_counters().active, solo_counters().hour) == (0, 0)
    assert "u='H99.D1' in the callback URL is no cap periods" in caplog.text


def test_the_periods_a_dial_action_carries_are_read_for_an_hours_second_time_too():
    """``u`` names the periods the leg's reservation counted; in the second 01:xx of Chicago's fall-back the
    hour is ``H2026110101b`` (``core/periods.py``). Read as no periods, such a leg's units were worked out
    again from the line's caps when it ended during an outage (a warning logged), not those it took."""
    second = dt.datetime(2026, 11, 1, 7, 30, tzinfo=dt.UTC)  # 01:30 CST, the second 01:xx
    assert " ".join(live.period_keys(second, "America/Chicago")) == "H2026110101b D20261101 M202611"
    for counted in ("H2026110101 D20261101 M202611", "H2026110101b D20261101 M202611", "H2026110101b"):
        carried = urlencode({"seq": "1", "u": counted.replace(" ", ".")})
        request = RequestFactory().post(f"/carriers/twilio/dial?{carried}")
        assert carrier_views._counted_query(request) == counted


def test_a_dial_action_handled_live_then_delivered_again_during_the_outage_gives_both_lines_back(world, monkeypatch):
    """The first leg's Dial action was handled live (the second target rung, its slot named by the call),
    the carrier didn't get the answer and sent it again while the database was away: degraded mode rings
    the second target too, holding it under its own token. When that leg ends, both holds go back."""
    missed = "+15125550004"  # Sleepy line first, then Awake line

    def awake() -> int:
        store = live.store_without_database()
        line = next(t for t in current_snapshot(check_version=False).targets.values() if t.core.number == "+15125550112")
        return store.read([line.core], {line.core.id: line.timezone}, solo_now())[line.core.id].active

    def action_of(answer: str) -> str:
        return html.unescape(re.search(r'action="[^"?]*\?([^"]*)"', answer).group(1))

    a = sid()
    unanswered = {**base(a, missed), "DialCallStatus": "no-answer", "DialCallDuration": "0", "DialBridged": "false"}
    up = pytest.MonkeyPatch()
    up.setattr(services, "handle_once", REAL_HANDLE_ONCE)
    try:
        first = world.voice(a, to=missed)  # live: rings Sleepy line
        second = world.post("/carriers/twilio/dial", {**unanswered, "DialCallSid": sid()}, action_of(first))
    finally:
        up.undo()
    assert "+15125550112" in second and awake() == 1  # live: rings Awake line, its slot named a#2
    again = world.post("/carriers/twilio/dial", {**unanswered, "DialCallSid": sid()}, action_of(first))  # degraded
    assert "+15125550112" in again and awake() == 2  # degraded mode took the line under its own token too
    world.post("/carriers/twilio/dial", {**unanswered, "DialCallSid": sid()}, action_of(again))
    assert awake() == 0  # both given back when the leg ended
    world.ended(a, 70, to=missed)
    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().errors == []
    assert awake() == 0


def test_a_leg_dialled_in_degraded_mode_that_ends_on_a_node_whose_database_is_back_gives_its_hold_back(
        world, monkeypatch):
    """A call routed in degraded mode on one node (a hold in Redis), replayed there while its first leg
    still rang; that leg's Dial action reaches another node, whose database is back: the hold and the
    cap unit go back then, not when the first node replays the call's end."""
    cap_the_solo_line_hourly()
    current_snapshot()
    a = sid()
    assert SOLO_LINE in world.voice(a)  # the database is away: degraded mode takes the line
    assert (solo_counters().active, solo_counters().hour) == (1, 1)
    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().waiting == 1  # replayed so far; the call goes on
    other_node = pytest.MonkeyPatch()
    other_node.setattr(spool, "is_degraded", lambda call_sid: False)  # no spool file for it there
    try:
        assert "The line is busy." in world.dial(a, 1, bridged=False)  # the only line didn't answer
        assert (solo_counters().active, solo_counters().hour) == (0, 0)
        world.ended(a, 35)
    finally:
        other_node.undo()
    assert replay.replay_ready().errors == []  # the first node finishes the call
    assert spool.files() == []
    assert (solo_counters().active, solo_counters().hour) == (0, 0)
    assert [x["result"] for x in call_to_dict(Call.objects.get(call_sid=a))["attempts"]] == ["no-answer"]


def test_a_leg_dialled_in_degraded_mode_still_ringing_when_the_call_ends_gives_its_hold_back(world, monkeypatch):
    """As above, but the caller hangs up while the line rings and no Dial action comes: the final status,
    reaching the node whose database is back, closes the leg (``canceled``) and gives the hold and the cap
    unit back. It left the leg ``ringing`` for good, and the hold until the first node replayed the call's
    end, which kept the unit (a call not delivered counted against the cap)."""
    cap_the_solo_line_hourly()
    current_snapshot()
    a = sid()
    assert SOLO_LINE in world.voice(a)  # the database is away: degraded mode takes the line
    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().waiting == 1  # replayed so far; the call goes on
    other_node = pytest.MonkeyPatch()
    other_node.setattr(spool, "is_degraded", lambda call_sid: False)  # no spool file for it there
    try:
        world.ended(a, 25)
        assert (solo_counters().active, solo_counters().hour) == (0, 0)
    finally:
        other_node.undo()
    assert replay.replay_ready().errors == [] and spool.files() == []  # the first node finishes the call
    assert (solo_counters().active, solo_counters().hour) == (0, 0)
    assert [x["result"] for x in call_to_dict(Call.objects.get(call_sid=a))["attempts"]] == ["canceled"]


def test_a_final_status_kept_by_a_recovered_node_ends_the_call_once_it_is_replayed(world, monkeypatch, settings):
    """Redis away too, so no plan tells a recovered node the call was routed elsewhere: its final status,
    reaching that node before the call is replayed, is kept; the replay then applies it."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    a = sid()
    assert SOLO_LINE in world.voice(a)  # degraded, limits not enforced
    monkeypatch.undo()  # the database is back; this node has not replayed yet
    other_node = pytest.MonkeyPatch()
    other_node.setattr(spool, "is_degraded", lambda call_sid: False)
    try:
        world.ended(a, 40)  # kept for the call
    finally:
        other_node.undo()
    assert not Call.objects.filter(call_sid=a).exists()
    assert replay.replay_ready().errors == []
    call = Call.objects.get(call_sid=a)
    assert (call.stage, call.final_status, call.duration_seconds) == ("ended", "completed", 40)
    assert call.verdict == "not_billable" and spool.files() == []


def test_a_replayed_call_whose_final_status_never_comes_is_closed_when_its_file_is_given_up(world, monkeypatch):
    a = sid()
    assert SOLO_LINE in world.voice(a)
    world.dial(a, 1, bridged=True, talk=95)  # connected; then the final status is lost
    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().waiting == 1  # replayed; waits for the call to end
    assert Call.objects.get(call_sid=a).stage != "ended"
    for name in list(replay._waiting_since):
        replay._waiting_since[name] -= replay.STALE_AFTER  # six hours of passes later
    assert replay.replay_ready().errors == []
    call = Call.objects.get(call_sid=a)
    assert (call.stage, call.verdict, call.talk_seconds) == ("ended", "billable", 95)
    assert spool.files() == [] and solo_active() == 0


def test_the_end_mark_of_a_call_routed_live_that_ended_during_the_outage_is_deleted_by_the_replay(world, monkeypatch):
    """Its final status marks its end in Redis (a late Dial action then rings no one, on any node); once the
    call is replayed the mark has done its work and goes, not kept for two days (and ``routed_elsewhere``
    no longer says the call was routed in degraded mode)."""
    up = pytest.MonkeyPatch()
    up.setattr(services, "handle_once", REAL_HANDLE_ONCE)
    a = sid()
    try:
        assert SOLO_LINE in world.voice(a)  # routed live
        world.dial(a, 1, bridged=True, talk=40)  # talked, live
    finally:
        up.undo()
    world.ended(a, 60)  # the final status comes during the outage
    store = live.store_without_database()
    assert set(store.plans(a)) == {"end"}

    monkeypatch.undo()  # the database is back
    assert replay.replay_ready().errors == []

    assert store.plans(a) == {}
    assert not degraded.routed_elsewhere(a)
    assert Call.objects.get(call_sid=a).stage == "ended"


def test_in_degraded_mode_counters_redis_does_not_know_are_read_as_they_stand(world):
    """With the database away no reservation can rebuild them, so read as empty (as routing reads them when
    it can rebuild) a busy one-line buyer would be rung again."""
    a, b = sid(), sid()
    assert SOLO_LINE in world.voice(a)
    store = live.store_without_database()
    solo = next(t for t in current_snapshot(check_version=False).targets.values() if t.core.number == SOLO_LINE)
    store.client.delete(store.known_key(solo.core.id))  # forgotten (stale on some node's say-so), say

    busy = world.voice(b)

    assert SOLO_LINE not in busy and "The line is busy." in busy
