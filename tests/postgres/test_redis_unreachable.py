"""Redis unreachable on PostgreSQL: simultaneous calls on several workers never exceed a target's limit.

Given the real server (gunicorn, 4 workers) on PostgreSQL with the Redis counters backend and nothing
listening at ``REDIS_URL``, when 8 calls for a campaign whose only line takes one call at a time arrive
at the same moment, then exactly one is dialled to it (its slot counted from the attempts in the database
under the target's row lock) and the others get the campaign's fallback (its message); nothing goes to the degraded
path; once that call ends, the next call takes the line.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from twilio.request_validator import RequestValidator

from callbroker.ops.server import start_server, stop_server
from tests.e2e.conftest import TOKEN, free_port

CONCURRENCY = "+15125550005"
PIPES_A = "+15125550101"  # concurrency 5 (tests/e2e/network.yaml)  # campaign e2e-concurrency: one target, concurrency 1 (tests/e2e/network.yaml)
SOLO_LINE = "+15125550121"
DELIVERIES = 8


@pytest.fixture()
def server_without_redis(fresh_pg):
    data_dir = Path(fresh_pg.env["CALLBROKER_DATA_DIR"])
    port = free_port()
    env = {**fresh_pg.env, "CALLBROKER_LOG_LEVEL": "INFO", "CALLBROKER_COUNTERS": "redis",
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    proc = start_server("127.0.0.1", port, 4, env=env, log_path=data_dir / "server.log")
    yield f"http://127.0.0.1:{port}", data_dir / "server.log"
    stop_server(proc)


def post(base_url: str, path: str, params: dict[str, str], client: httpx.Client | None = None) -> httpx.Response:
    url = base_url + path
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}
    return (client or httpx).post(url, data=params, headers=headers, timeout=30)


def inbound(sid: str, n: int) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": f"+1737555{n:04d}", "To": CONCURRENCY,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", "FromZip": "78701"}


def simultaneous_calls(base_url: str, first: int) -> dict[str, str]:
    sids = ["CA" + uuid.uuid4().hex for _ in range(DELIVERIES)]
    start = threading.Barrier(DELIVERIES)

    def call(i: int) -> str:
        with httpx.Client(timeout=30) as client:
            start.wait()
            response = post(base_url, "/carriers/twilio/voice", inbound(sids[i], first + i), client)
        assert response.status_code == 200
        return response.text

    with ThreadPoolExecutor(max_workers=DELIVERIES) as pool:
        return dict(zip(sids, pool.map(call, range(DELIVERIES)), strict=True))


def test_with_redis_unreachable_simultaneous_calls_never_exceed_a_one_line_target(server_without_redis, fresh_pg):
    base_url, log_path = server_without_redis
    for round_number in range(3):
        answers = simultaneous_calls(base_url, first=round_number * DELIVERIES)
        dialled = [sid for sid, body in answers.items() if SOLO_LINE in body]
        assert len(dialled) == 1, answers
        others = [body for sid, body in answers.items() if sid not in dialled]
        assert all("The line is busy." in body and "<Dial" not in body for body in others), others
        held = fresh_pg.sql("SELECT c.call_sid, c.decision->>'limits' FROM calls_callattempt a "
                            "JOIN calls_call c ON c.id = a.call_id WHERE a.slot_held")
        assert held == [(dialled[0], "database")]
        # The call ends: its slot is given back in the database, and the next round's call takes it.
        ended = post(base_url, "/carriers/twilio/status", {"CallSid": dialled[0], "CallStatus": "completed",
                                                           "CallDuration": "30"})
        assert ended.status_code == 200
        assert fresh_pg.value("SELECT count(*) FROM calls_callattempt WHERE slot_held") == 0

    assert fresh_pg.value("SELECT count(*) FROM calls_call WHERE decision->>'degraded' = 'true'") == 0
    marked = fresh_pg.value("SELECT count(*) FROM network_targetstate WHERE counted_without_redis_at IS NOT NULL")
    assert marked == 1  # Redis must count the one-line target again when it answers
    log = log_path.read_text()
    assert "counted in the database" in log and "Traceback" not in log


def test_a_rebuild_skips_a_target_row_held_by_a_reservation_counting_in_the_database(fresh_pg):
    """The rebuild never waits for a row a webhook holds (that webhook may be waiting for the rebuild):
    it skips it, leaves its mark, and unmarks only what it locked."""
    ids = [row[0] for row in fresh_pg.sql("SELECT id FROM network_target ORDER BY id LIMIT 2")]
    for target_id in ids:
        fresh_pg.sql("INSERT INTO network_targetstate (target_id, active_calls, pause_reason, counted_without_redis_at) "
                     "VALUES (%s, 0, '', now()) ON CONFLICT (target_id) DO UPDATE SET counted_without_redis_at = now()",
                     [target_id])
    with psycopg.connect(fresh_pg.url) as holder:  # a reservation counting in the database, not committed yet
        holder.execute("SELECT 1 FROM network_targetstate WHERE target_id = %s FOR UPDATE", [ids[0]])
        got = fresh_pg.probe("lock_marked", target_ids=ids)
        holder.rollback()
    assert got["locked"] == [ids[1]] and got["seconds"] < 2, got
    marked = fresh_pg.sql("SELECT target_id FROM network_targetstate WHERE counted_without_redis_at IS NOT NULL "
                          "AND target_id = ANY(%s)", [ids])
    assert marked == [(ids[0],)]  # the skipped target stays marked: Redis recounts it at the next read



@pytest.mark.parametrize("first", ["database", "redis"])
def test_a_node_counting_in_the_database_and_one_reaching_redis_never_both_take_the_last_slot(
        first, fresh_pg, redis_server):
    """The hand-over (Redis stopping, or coming back, or out of one node's reach): node "database" can't
    reach Redis and counts the one-line target's limits from the attempts in the database; node "redis"
    reaches Redis. Whichever takes the slot first, the other's reservation waits for its transaction
    (the target's limits lock: shared through Redis, exclusive in the database) and is refused: one
    call on the line, not two.

    - "database" first: Redis never saw that slot, but the target is marked counted without Redis, so
      node "redis" counts in the database as well.
    - "redis" first: node "database" counts the attempt node "redis" committed with its slot.
    """
    second = "redis" if first == "database" else "database"
    got = fresh_pg.probe("handover", redis_url=redis_server.url, number=SOLO_LINE, hold_s=0.5, first=first,
                         second=second)
    assert got["first"] is None, got  # the first took the slot
    assert got["second"] == "concurrency_full", got
    assert got["second_seconds"] >= 0.3, got  # the second waited for the first's commit
    assert got["redis_active"] == (1 if first == "redis" else 0), got  # the refusal took nothing in Redis


def test_reservations_through_redis_do_not_wait_for_each_other(fresh_pg, redis_server):
    """The limits lock is shared between reservations through Redis: the second is refused by Redis at
    once (the line is taken), without waiting for the first's transaction."""
    got = fresh_pg.probe("handover", redis_url=redis_server.url, number=SOLO_LINE, hold_s=1.0, first="redis",
                         second="redis")
    assert got["first"] is None and got["second"] == "concurrency_full", got
    assert got["second_seconds"] < 0.5, got
    assert got["redis_active"] == 1, got


def test_reservations_through_redis_of_a_marked_target_are_checked_in_the_database_one_at_a_time(
        fresh_pg, redis_server):
    """A target marked counted without Redis, whose 4 calls in progress Redis doesn't know (limit 5):
    two reservations through Redis at once both pass Redis (it counts 0, then 1); the database then
    decides, one at a time under the target's row lock, so the second sees the first's call and is
    refused: 5 calls, not 6."""
    got = fresh_pg.probe("handover", redis_url=redis_server.url, number=PIPES_A, hold_s=0.5, first="redis",
                         second="redis", held_before=4, marked=True)
    assert got["first"] is None and got["second"] == "concurrency_full", got
    assert got["second_seconds"] >= 0.3, got  # it waited for the first's commit
    assert got["redis_active"] == 1, got  # the refused one gave its Redis slot back


def test_two_reservations_of_a_line_on_nodes_trying_redis_again_dont_deadlock(fresh_pg):
    """Two nodes that lost Redis and try it again before a reservation (their last failure long enough ago),
    reserving Line A at the same moment: each took the line's limits lock shared to try Redis, Redis failed
    for both, and each then asked for it exclusive to count in the database, waiting for the other's shared
    hold: a deadlock, one stopped by PostgreSQL after a second (its webhook run again). A process whose outage
    is not over (Redis not heard from since) now takes the lock exclusive at once: the second waits for the
    first's commit, and both are counted in the database."""
    got = fresh_pg.probe("two_reservations_trying_redis")
    assert got["in_vain"] == [], got  # the two met as meant
    assert got["raised"] == {}, got
    assert got["refused"] == {"one": None, "two": None}, got  # Line A takes 5 calls at once
