"""Traffic for the fault tests, and the check that every call came out right.

:class:`Traffic` keeps calls flowing from a few threads (through :class:`Balanced`, a carrier behind a
load balancer) while a test breaks something; :func:`audit` then checks, from the public
``callbroker calls list --json`` output, that every call the carrier placed exists exactly once, agrees
with what the carrier saw, has the verdict its facts give, ended, that the ledger charged and paid out
every billable call exactly once, and that no target exceeded its concurrency limit or caps.

The mix (e2e network): 40% of the calls go to a buyer with **one line** (concurrency 1), so that calls
overlap on it and a second caller must be refused whenever the first is still connected; the rest go to
the plumbing campaign (first line answers, or it doesn't and the second does), some with every webhook
delivered twice and the callbacks reordered. Calls last a few seconds of real time (``TIME_SCALE``).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field

import redis

from callbroker.ops.audit import limit_violations
from callbroker.sim.emulator import BuyerBehaviour, CallRecord, Carrier, Delivery

PUBLIC_URL = "http://callbroker.test"  # what the carrier calls: the load balancer in front of the nodes
PLUMBING, SOLO = "+15125550001", "+15125550005"
PIPES_A, PIPES_B, SOLO_LINE = "+15125550101", "+15125550102", "+15125550121"
TIME_SCALE = 0.02  # 100 simulated seconds of talk = 2 s of real time
SOAK_CALLS = int(os.environ.get("CALLBROKER_SOAK_CALLS", "150"))
_callers = itertools.count()


#: Threads placing calls: more in the soak, where each fault places hundreds of calls.
THREADS = 4 if SOAK_CALLS <= 1000 else 8


def fault_calls(minimum: int = 60, share: int = 8) -> int:
    """Calls a fault test places: modest in ``make test``, ``CALLBROKER_SOAK_CALLS / share`` in the soak."""
    return max(minimum, SOAK_CALLS // share)


def caller() -> str:
    """A new caller every call (the same caller twice would be a duplicate, not billable)."""
    n = next(_callers)
    return f"+1737{200 + n // 10_000 % 800:03d}{n % 10_000:04d}"


def answers(talk: int) -> BuyerBehaviour:
    return BuyerBehaviour(answers=True, ring_seconds=3, talk_seconds=talk)


class Balanced(Carrier):
    """A carrier calling ``PUBLIC_URL``, behind which a load balancer sends each request to the next live node.

    Like a load balancer with health checks: a node whose process has exited gets nothing more, and a
    request that fails at transport level (its node killed mid-request) is retried once, on the next
    node — the emulator's own retry.
    """

    def __init__(self, nodes, token: str, **kwargs) -> None:
        super().__init__(nodes[0].base_url, token, public_url=PUBLIC_URL, **kwargs)
        self.nodes = list(nodes)
        self._turn = itertools.count()
        self._last = threading.local()  # the node this thread's last request went to, and its URL

    def _transport_url(self, public: str) -> str:
        live = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None] or self.nodes
        # A retry (same URL again from this thread) goes to another node: just after kill -9 the dead
        # node may not look dead yet, and other threads move the shared turn, so it could be picked again.
        previous = self._last.__dict__.get("node") if self._last.__dict__.get("url") == public else None
        choices = [n for n in live if n is not previous] or live
        node = choices[next(self._turn) % len(choices)]
        self._last.url, self._last.node = public, node
        return node.base_url + public[len(self.public_url):]


@dataclass
class Placed:
    record: CallRecord
    kind: str
    started: float  # time.monotonic()
    ended: float


def place(carrier: Carrier, rng: random.Random) -> tuple[str, CallRecord]:
    """One call of the mix."""
    r = rng.random()
    params = {"FromZip": "78701"}
    if r < 0.40:
        return "solo", carrier.place_call(SOLO, caller(), params=params, buyers={SOLO_LINE: answers(100)})
    if r < 0.65:
        buyers = {PIPES_A: BuyerBehaviour(answers=False, ring_seconds=40), PIPES_B: answers(90)}
        return "next-line", carrier.place_call(PLUMBING, caller(), params=params, buyers=buyers)
    delivery = Delivery(duplicate=True, reorder=True) if r >= 0.88 else Delivery()
    kind = "duplicated" if delivery.duplicate else "plumbing"
    return kind, carrier.place_call(PLUMBING, caller(), params=params, buyers={PIPES_A: answers(120)},
                                    delivery=delivery)


@dataclass
class Traffic:
    """Calls placed back to back from ``threads`` threads until :meth:`stop`."""

    carrier: Carrier
    threads: int = 4
    seed: int = 1
    placed: list[Placed] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Traffic:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(random.Random(f"{self.seed}:{n}"),), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            kind, record = place(self.carrier, rng)
            with self._lock:
                self.placed.append(Placed(record, kind, started, time.monotonic()))

    def count(self) -> int:
        with self._lock:
            return len(self.placed)

    def wait_for(self, calls: int, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < calls:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.count()} of {calls} calls placed within {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> list[Placed]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=120)
        return list(self.placed)

    def between(self, start: float, end: float) -> list[Placed]:
        """Calls placed (first webhook sent) in this interval."""
        return [p for p in self.placed if start <= p.started < end]


@dataclass
class Audit:
    problems: list[str]
    calls: dict[str, dict]  # CallSid -> the recorded call (calls list --json)
    violations: list[str]

    @property
    def billable(self) -> int:
        return sum(1 for c in self.calls.values() if c["verdict"] == "billable")


def audit(cluster, network: dict, placed: list[Placed]) -> Audit:
    """Every placed call exactly once, as the carrier saw it, with the verdict its facts give; the limits."""
    rows = cluster.calls_by_sid()
    campaigns = {c["name"]: c for c in network["campaigns"]}
    problems: list[str] = []
    placed_sids = {p.record.call_sid for p in placed}
    for sid in set(rows) - placed_sids:
        problems.append(f"{sid}: recorded but never placed by the carrier")
    calls: dict[str, dict] = {}
    for p in placed:
        record = p.record
        found = rows.get(record.call_sid, [])
        if len(found) != 1:
            problems.append(f"{record.call_sid} ({p.kind}) recorded {len(found)} times\n{record.transcript()}")
            continue
        call = calls[record.call_sid] = found[0]
        if not record.ok:  # the caller heard an application error, or a webhook failed: silence
            problems.append(f"{record.call_sid}: carrier problems {record.errors or record.error_codes}")
        dialled = [a["number"] for a in call["attempts"]]
        if dialled != [d.number for d in record.dials]:
            problems.append(f"{record.call_sid}: attempts {dialled}, carrier dialled "
                            f"{[d.number for d in record.dials]}")
        talked = sum(d.duration for d in record.dials if d.bridged)
        if call["talk_seconds"] != talked:
            problems.append(f"{record.call_sid}: talk {call['talk_seconds']} s, carrier says {talked} s")
        if call["stage"] != "ended":
            problems.append(f"{record.call_sid}: stage {call['stage']} after the call ended")
        buffer = campaigns[call["campaign"]["name"]].get("buffer_seconds", 60) if call["campaign"] else 60
        expected = "billable" if talked >= buffer else "not_billable"
        if call["verdict"] != expected:
            problems.append(f"{record.call_sid} ({p.kind}): verdict {call['verdict']} "
                            f"{[r['code'] for r in call['reasons']]}, expected {expected} (talked {talked} s)")
        if not talked and "not_connected" not in {r["code"] for r in call["reasons"]}:
            problems.append(f"{record.call_sid}: never bridged but not flagged not_connected")
    # None billed twice: the ledger charges and pays out every billable call exactly once (docs/billing.md).
    ledger = json.loads(cluster.cli("billing", "check", "--json", check=False).stdout)
    problems += [f"ledger: {m['call_sid']}: {m['problem']}" for m in ledger["mismatches"]]
    billable = sum(1 for found in rows.values() for c in found if c["verdict"] == "billable")
    if (ledger["billable_calls"], ledger["charged_calls"], ledger["paid_calls"]) != (billable, billable, billable):
        problems.append(f"ledger: {ledger['charged_calls']} calls charged, {ledger['paid_calls']} paid out, "
                        f"{billable} billable")
    violations = limit_violations(network, list(calls.values()))
    return Audit(problems + violations, calls, violations)


def degraded(call: dict) -> bool:
    """Routed (at least once) from memory."""
    return any(p.get("degraded") for p in (call.get("decision") or {}).get("passes", ()))


def limits_enforced(call: dict) -> bool:
    """Every step of the call was routed with the live counters (normal path, or degraded with Redis)."""
    return all(p.get("limits_enforced", True) for p in (call.get("decision") or {}).get("passes", ()))


def limits_counted_in_database(call: dict) -> bool:
    """A step of the call took its slot while Redis was unreachable: counted from the database's attempts."""
    return any(p.get("limits_counted_in_database") for p in (call.get("decision") or {}).get("passes", ()))


def refused_for_limits(call: dict) -> bool:
    """The one-line buyer was busy: left out of the ring list or refused when its turn came."""
    decision = call.get("decision") or {}
    codes = {e["code"] for e in decision.get("excluded", ()) + decision.get("refused_at_dial", ())}
    return "concurrency_full" in codes


def redis_state(cluster) -> tuple[dict[str, int], list[str]]:
    """The cluster's slots held in Redis per target key, and degraded-mode leftovers (holds, plans)."""
    client = redis.Redis.from_url(cluster.env["REDIS_URL"])
    prefix = cluster.env["CALLBROKER_REDIS_PREFIX"]
    held = {key.decode(): int(client.get(key) or 0) for key in client.scan_iter(match=f"{prefix}{{t:*}}:active")}
    leftovers = [key.decode() for pattern in (f"{prefix}{{t:*}}:holds", f"{prefix}{{c:*}}:plan")
                 for key in client.scan_iter(match=pattern)]
    client.close()
    return held, leftovers
