""""Why did (or didn't) my call convert?": the words ``callbroker calls show`` prints for a real call.

Given the e2e network (tests/e2e/network.yaml), when the emulator plays a call through the real server, then
the text a publisher or buyer reads says what the call record says, and nothing that isn't so.
"""

from __future__ import annotations

import itertools

import pytest

from callbroker.sim.emulator import BuyerBehaviour

pytestmark = pytest.mark.e2e

PLUMBING = "+15125550001"
PIPES_A, PIPES_B, PIPES_C = "+15125550101", "+15125550102", "+15125550103"
_callers = itertools.count(1000)


def new_caller() -> str:
    """A caller of this file's own (the duplicate and velocity rules never reach another file's calls)."""
    return f"+1512445{next(_callers):04d}"


def answers(talk: int) -> BuyerBehaviour:
    return BuyerBehaviour(answers=True, ring_seconds=4, talk_seconds=talk)


def shown(server, call_sid: str) -> list[str]:
    return server.cli("calls", "show", call_sid).stdout.splitlines()


def section(lines: list[str], title: str) -> list[str]:
    """The lines of one section of ``calls show`` (its title to the next blank line)."""
    start = lines.index(title)
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start + 1:end]


def test_buyers_who_never_talked_are_not_said_to_have_talked(server, carrier):
    # given a caller whom the first buyer doesn't answer, the second is busy for, the third talks to
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"}, buyers={
        PIPES_A: BuyerBehaviour(answers=False, ring_seconds=40), PIPES_B: BuyerBehaviour(busy=True),
        PIPES_C: answers(95)})
    # when the call is shown
    attempts = section(shown(server, record.call_sid), "Attempts")
    # then only the leg that was bridged says how long the buyer talked
    assert [line.rsplit("→ ", 1)[1] for line in attempts] == ["No answer", "Busy", "Connected"]
    assert [("talked" in line) for line in attempts] == [False, False, True]
    assert "talked 95 s" in attempts[2]
