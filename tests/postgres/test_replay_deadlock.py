"""A deadlock met by the spool replay on PostgreSQL: the file is replayed again, and the pass goes on.

Given four calls recorded live whose final statuses were spooled during an outage (files A, B, C, D, replayed
in that order), when a second connection makes a real deadlock with the replay of A (it locks A's row while
the replay holds A's call lock, then asks for that lock: PostgreSQL stops the replay's transaction), then the
replay of A is run again at once, as a live webhook's transaction is (``services.handle_once``), and every
call ends in that pass. When the deadlock comes back at every run, A alone waits for a later pass (as any
waiting file) and the pass goes on with B; the database gone (the replay's connection ended while C waits
for its row) still stops the pass, D waiting for the next. Until 2026-12-07 the deadlock was taken for an
outage: the pass stopped at A, and B, C and D waited for the next pass with it.
"""

from __future__ import annotations

from callbroker.calls.services import TRANSIENT_RETRIES


def test_a_deadlock_met_by_the_replay_is_retried_and_the_pass_goes_on(fresh_pg):
    found = fresh_pg.probe("replay_beside_a_lock_holder", deadlocks=1)
    first = found["passes"][0]
    assert (first["errors"], first["spooled"], first["ended"]) == ([], [], ["A", "B", "C", "D"]), found
    assert found["tries"] == 2
    assert [line.partition(" ")[0] for line in found["lines"]] == ["INFO"]
    assert "deadlock detected; retrying (1)" in found["lines"][0]


def test_a_file_deadlocked_at_every_run_waits_alone_and_an_outage_still_stops_the_pass(fresh_pg):
    found = fresh_pg.probe("replay_beside_a_lock_holder", deadlocks=TRANSIENT_RETRIES, cut=True)
    first, second = found["passes"]
    assert (first["spooled"], first["ended"]) == (["A", "C", "D"], ["B"]), found  # D: after the outage
    assert [error.partition(": ")[2].partition("\n")[0] for error in first["errors"]] == [
        "deadlock detected", "terminating connection due to administrator command"]
    assert found["tries"] == TRANSIENT_RETRIES
    assert "the file waits for a later pass and this pass goes on with the other files" in found["lines"][-1]
    assert (second["errors"], second["spooled"], second["ended"]) == ([], [], ["A", "B", "C", "D"])
