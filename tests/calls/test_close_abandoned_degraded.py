"""A call whose one leg was dialled in degraded mode holds no slot of the call path once replayed (degraded
mode held it in Redis, or nowhere with SQL counters): when its final status never came, nothing found it and
it stayed in progress and ``pending`` for good. Six hours after it started ``close_abandoned`` closes it as a
final status would: a leg still ringing canceled, not billable; a leg whose Dial action recorded a bridge
billable, as a call holding its slot is (``test_close_abandoned.py``).
"""

from __future__ import annotations

import datetime as dt

from callbroker.billing.models import LedgerEntry
from callbroker.calls import services, spool
from callbroker.calls.models import CallEvent
from tests.calls.test_degraded_ivr import IVR, ROOFER, carrier, held_slots, recorded  # noqa: F401 - the fixture


def dialled_from_memory(carrier) -> tuple[dict[str, str], str]:
    """A roofing caller types an in-area ZIP and says yes while the database is away: the roofer is dialled
    from memory, and the replay records the leg (no slot of the call path)."""
    call = carrier.call(IVR, FromZip="80202", FromState="CO")
    carrier.voice(call)
    carrier.zip(call, "80203")
    carrier.down = True
    answer = carrier.category(call, "1")
    carrier.down = False
    assert ROOFER in answer
    carrier.replay()
    return call, answer


def test_a_call_whose_leg_was_dialled_from_memory_is_closed_when_its_final_status_never_came(carrier):
    call, _answer = dialled_from_memory(carrier)
    [leg] = recorded(call).attempts.all()
    assert (recorded(call).stage, leg.result, leg.slot_held) == ("dialing", "ringing", False)
    later = recorded(call).started_at + dt.timedelta(hours=7)

    assert services.close_abandoned(later) == [call["CallSid"]]

    ended = recorded(call)
    [leg] = ended.attempts.all()
    assert (ended.stage, ended.verdict, ended.reason_codes) == ("ended", "not_billable", ["not_connected"])
    assert (leg.result, leg.slot_held, held_slots()) == ("canceled", False, 0)
    assert not LedgerEntry.objects.exists()
    assert services.close_abandoned(later) == []
    carrier.replay()  # its spool file, kept while the call went on, goes now that it has ended
    assert not spool.path_of(call["CallSid"]).exists()


def test_a_bridged_call_dialled_from_memory_is_closed_billable_when_its_final_status_never_came(carrier):
    call, answer = dialled_from_memory(carrier)
    carrier.bridged(answer, call, 120)  # the roofer talked: its Dial action (spooled after the call's file) …
    carrier.replay()  # … replayed, then nothing more
    assert (recorded(call).stage, recorded(call).attempts.get().slot_held) == ("connected", False)
    later = recorded(call).started_at + dt.timedelta(hours=7)

    assert services.close_abandoned(later) == [call["CallSid"]]

    ended = recorded(call)
    assert (ended.stage, ended.verdict, ended.talk_seconds, ended.final_status) == ("ended", "billable", 120, "")
    assert ended.revenue > 0 and LedgerEntry.objects.filter(call_sid=call["CallSid"]).exists()
    assert ended.attempts.get().result == "bridged" and held_slots() == 0
    assert CallEvent.objects.filter(call_sid=call["CallSid"], kind="abandoned").count() == 1
