"""`callbroker bench`: the figures we promise, measured on this machine.

(a) core routing decisions per second and latency; (b) end to end: the carrier emulator driving the
real server (started as `make run` starts it, in production mode) through full call lifecycles;
(c) the signed inbound webhook alone under `wrk`, beside a hello-world view on the same server.
Each part runs against its own fresh SQLite database in a temporary directory; ``--history N`` puts N
past calls into it first (``ops/history.py``): the tables of an installation in use, not a new one.
(d) `--only counters`: the live per-target counters (``network/live.py``), SQL on PostgreSQL (with and
without the commit's WAL flush) against Redis: reserve+release per second and latency with two
processes hammering the same few targets, and a check that no limit was ever exceeded (see
:func:`bench_counters`; docs/production.md has the figures). PostgreSQL and Redis are private servers
started in a temporary directory (or given with ``--database-url``/``--redis-url``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from twilio.request_validator import RequestValidator

from callbroker.ops import local_services
from callbroker.ops.server import default_workers, start_server, stop_server
from callbroker.words import counted

TOKEN = "bench-auth-token"
DEMO = Path(__file__).resolve().parents[1] / "network" / "demo" / "demo-network.yaml"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) so far, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (proc(5), counted after the command name)
    return ticks / os.sysconf("SC_CLK_TCK")


def _driver_cpu() -> float:
    """CPU of this process and of its children that ended: the emulator's, whether it ran here or forked."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class MemorySampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree (gunicorn master + workers) until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self._halt = threading.Event()

    def tree(self) -> list[int]:
        """The process and its descendants, now."""
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            parent = frontier.pop()
            try:
                children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                pids.append(child)
                frontier.append(child)
        return pids

    @staticmethod
    def _kb(path: str, field: str) -> int:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self) -> None:
        pids = self.tree()
        rss = sum(self._kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
        pss = sum(self._kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class BenchServer:
    """A production-mode server on a fresh database with the demo network loaded (on a copy of ``database``
    when given: a prepared SQLite file, e.g. with past calls)."""

    def __init__(self, workers: int, database: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="callbroker-bench-"))
        self.port = local_services.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CALLBROKER_DATA_DIR": str(self.dir),
            "CALLBROKER_ENV": "production",
            # what its emulator calls and signs, whatever the environment says (production needs one)
            "CALLBROKER_PUBLIC_URL": self.base,
            "CALLBROKER_SECRET_KEY": uuid.uuid4().hex,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_ACCOUNT_SID": "",  # its emulator is an account of its own, whatever the environment says
            "TWILIO_ACCOUNT_TOKENS": "",  # signed with TOKEN, whatever accounts the environment names
            "CALLBROKER_LOG_LEVEL": "ERROR",
        }
        self.env.pop("DATABASE_URL", None)
        self.workers = workers
        self.database = database
        self.proc: subprocess.Popen | None = None

    @property
    def database_path(self) -> Path:
        return self.dir / "callbroker.sqlite3"  # settings.py: the SQLite file under CALLBROKER_DATA_DIR

    def prepare(self) -> None:
        """The database, migrated, with the demo network loaded; no server yet."""
        if self.database:
            shutil.copyfile(self.database, self.database_path)
            # On disk before the server starts: the kernel writing a large copy back in the middle of the run
            # stalls the server's own writes (hundreds of ms) and would be measured as the server's latency.
            with open(self.database_path, "rb") as copy:
                os.fsync(copy.fileno())
        cli = [sys.executable, "-m", "callbroker.cli"]
        subprocess.run([*cli, "migrate", "--verbosity", "0"], env=self.env, check=True)
        subprocess.run([*cli, "network", "load", str(DEMO)], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def __enter__(self) -> BenchServer:
        self.prepare()
        self.proc = start_server("127.0.0.1", self.port, self.workers, env=self.env, log_path=self.dir / "server.log")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            stop_server(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def history_database(calls: int, progress: Callable[[int, int], None] | None = None) -> Iterator[Path | None]:
    """A migrated database with the demo network and ``calls`` past calls (``ops/history.py``), to copy
    into each bench server (``BenchServer(database=…)``); ``None`` for no history. Removed afterwards."""
    if calls <= 0:
        yield None
        return
    from callbroker.ops import history

    history.check_space(calls, Path(tempfile.gettempdir()))
    template = BenchServer(1)
    try:
        template.prepare()
        history.fill(template.database_path, calls, progress=progress)
        yield template.database_path
    finally:
        shutil.rmtree(template.dir, ignore_errors=True)


def bench_core_part(decisions: int) -> dict:
    from callbroker.core.bench import bench_core

    return bench_core(n_targets=1000, zips_per_area=2000, decisions=decisions, seed=1)


def bench_end_to_end(workers: int, calls: int, concurrency: int, drivers: int | None = None,
                     rate: float | None = None, database: Path | None = None) -> dict:
    """Full call lifecycles through the emulator against a fresh production-mode server.

    Without ``rate``, as fast as the server answers with ``concurrency`` calls in flight (a closed loop:
    the throughput; the latency is mostly each webhook's wait behind the others). With ``rate``, a new
    call starts every 1/``rate`` s whatever the server does (up to ``concurrency`` in flight): the
    latency of each webhook at that load, the figure the p99 target is about. ``database``: start from a
    copy of this prepared file (``history_database``) instead of an empty one.
    """
    import yaml

    from callbroker.sim.emulator import Carrier
    from callbroker.sim.traffic import generate_day, run_traffic_processes

    network = yaml.safe_load(DEMO.read_text())
    with BenchServer(workers, database) as srv:
        sampler = MemorySampler(srv.proc.pid)
        sampler.sample()
        idle_rss = sampler.peak_rss
        hello_before = hello_world_rps(srv.base)
        sampler.start()
        planned = generate_day(network, calls=calls, seed=11)
        server_cpu, emulator_cpu = cpu_seconds(sampler.tree()), _driver_cpu()
        # The emulator in as many processes as cores: one Python process can't keep the server busy.
        stats = run_traffic_processes(lambda i: Carrier(srv.base, TOKEN, seed=11 + i, time_scale=0.0), planned,
                                      concurrency=concurrency, processes=drivers or default_workers(), rate=rate)
        # Both share the machine's cores: what each spent per webhook says how full the machine was.
        server_cpu = cpu_seconds(sampler.tree()) - server_cpu
        emulator_cpu = _driver_cpu() - emulator_cpu  # the emulator's processes are joined by now
        sampler.stop()
        latencies = list(stats.latencies_ms)
        server_side = server_side_latency(srv.base, srv.env.get("CALLBROKER_METRICS_TOKEN", ""))
        hello_after = hello_world_rps(srv.base)
        return {
            "workers": workers,
            "drivers": drivers or default_workers(),
            "offered_rate": rate,
            "concurrency": concurrency,
            "calls": stats.calls,
            "errors": stats.errors,
            "webhooks": len(latencies),
            # What the calls did depends on the hour the bench runs: buyers keep their opening hours.
            "bridged_share": round(stats.bridged / stats.calls, 3) if stats.calls else 0,
            "local_time_central": dt.datetime.now(ZoneInfo("America/Chicago")).strftime("%a %H:%M"),
            "wall_s": round(stats.wall_seconds, 2),
            "lifecycles_per_s": round(stats.calls / stats.wall_seconds, 1) if stats.wall_seconds else 0,
            "webhook_p50_ms": round(_pct(latencies, 0.50), 2),
            "webhook_p99_ms": round(_pct(latencies, 0.99), 2),
            "server_cpu_ms_per_webhook": round(1000 * server_cpu / len(latencies), 3) if latencies else None,
            "emulator_cpu_ms_per_webhook": round(1000 * emulator_cpu / len(latencies), 3) if latencies else None,
            "cores_busy": round((server_cpu + emulator_cpu) / stats.wall_seconds, 2) if stats.wall_seconds else None,
            **server_side,
            # The machine's speed at the time (a shared VM's drifts by a third within minutes), in the unit of
            # the reference ("about 2,700 req/s"): the hello world on this server just before and after.
            "hello_rps_before": hello_before,
            "hello_rps_after": hello_after,
            "server_rss_idle_mb": round(idle_rss / 1024, 1),
            "server_rss_peak_mb": round(sampler.peak_rss / 1024, 1),
            "server_pss_peak_mb": round(sampler.peak_pss / 1024, 1),
        }


#: Seconds of hello world under ``wrk`` before and after each end-to-end run (``hello_world_rps``).
HELLO_PROBE_S = 2


def hello_world_rps(base: str, seconds: int = HELLO_PROBE_S) -> float | None:
    """Requests per second of the hello-world view on this server under ``wrk`` (None without ``wrk``)."""
    if shutil.which("wrk") is None:
        return None
    return _wrk(base + "/bench/hello", seconds, 32, 2).get("rps")


def server_side_latency(base: str, token: str = "") -> dict:
    """The workers' own view of the webhooks' latency, from ``callbroker_webhook_duration_seconds``.

    From Django receiving a request to its answer, summed over the workers: what the emulator's figures
    add on top is the wait for a free worker and the emulator's own time (its processes share the cores).
    ``server_p99_le_ms``: the smallest histogram bucket holding 99 % of the webhooks. ``token``: the
    server's ``CALLBROKER_METRICS_TOKEN`` (the bench's server inherits it from the environment).
    """
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(base + "/metrics", headers=headers, timeout=10)
    if answer.status_code != 200:  # say why the figures are missing; the run's own figures still stand
        return {"server_webhooks": 0, "server_within_25ms": 0, "server_p99_le_ms": None,
                "server_metrics_error": f"/metrics answered {answer.status_code}"}
    counts: dict[float, float] = {}  # upper bound (s) -> webhooks, summed over the endpoints
    for family in text_string_to_metric_families(answer.text):
        if family.name == "callbroker_webhook_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    counts[le] = counts.get(le, 0.0) + sample.value
    total = counts.get(float("inf"), 0.0)
    if not total:
        return {"server_webhooks": 0, "server_within_25ms": 0, "server_p99_le_ms": None}
    p99 = next(le for le in sorted(counts) if counts[le] >= 0.99 * total)
    return {"server_webhooks": int(total), "server_within_25ms": int(counts.get(0.025, 0.0)),
            "server_p99_le_ms": p99 * 1000 if p99 != float("inf") else None}


#: Calls in flight allowed in the paced run: enough that the pace, not this bound, decides when calls start.
PACED_CONCURRENCY = 64

#: Calls in flight per server worker in the closed-loop run of (b): enough to keep every worker busy
#: while the emulator works on the other calls (a call spends about a quarter of its time there), and no
#: more: beyond that, calls in flight add no throughput, only a queue in the listening socket's backlog,
#: i.e. latency (docs/benchmarks.md, 2026-12-07 00:05: 3, 4, 6, 8, 12 and 16 calls in flight on 2 workers).
CALLS_IN_FLIGHT_PER_WORKER = 4

#: Calls in flight in (e), shared among the nodes (a correctness run: many at once, to race the limits).
NODES_CALLS_IN_FLIGHT = 16


WRK_SCRIPT = r"""
local bodies, sigs, counter, first, stride = {}, {}, 0, 0, 1
local thread_id = 0
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
function init(args)
  local path, threads = args[1], tonumber(args[2])
  local first, last = tonumber(args[3] or "0"), tonumber(args[4] or "1e18")  -- this run's lines: [first, last)
  local i = 0
  for line in io.lines(path) do
    if i >= last then break end
    if i >= first and i % threads == tid then
      local tab = line:find("\t")
      sigs[#sigs + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    i = i + 1
  end
end
function request()
  counter = counter + 1
  if counter > #bodies then counter = 1 end
  return wrk.format("POST", PATH, {["Content-Type"] = "application/x-www-form-urlencoded",
                                   ["X-Twilio-Signature"] = sigs[counter]}, bodies[counter])
end
"""


def _wrk(url: str, seconds: int, connections: int, threads: int, script: Path | None = None,
         args: list[str] | None = None) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    result = {"raw": out}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            result["p50"] = parts[1]
        elif parts[:1] == ["99%"]:
            result["p99"] = parts[1]
        elif "Non-2xx" in line:
            result["non_2xx"] = int(parts[-1])
    return result


#: (c)'s wrk threads; wrk refuses fewer connections than threads, so ``--connections`` is at least this.
WRK_THREADS = 2

#: (c) alternates this many short runs of each side: the machine's speed drifts within a minute (±30 % seen
#: on a shared VM), and a hello world measured a minute before the webhook compares the minutes, not the code.
WRK_ROUNDS = 5


def _wrk_ms(text: str | None) -> float | None:
    """A wrk latency ("850.12us", "28.82ms", "1.02s", "1.5m") in milliseconds."""
    if not text:
        return None
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 60e3)):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * factor
            except ValueError:
                return None
    return None


def _requests_done(raw: str) -> int:
    """The "N requests in 3.00s" count of a wrk report (0 if absent)."""
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == "requests" and parts[2] == "in":
            return int(parts[0])
    return 0


def split_rounds(seconds: int, rounds: int) -> tuple[int, int]:
    """(c)'s rounds and seconds per round for ``seconds`` of wrk on each side split into ``rounds``."""
    rounds = max(1, rounds)
    return rounds, max(1, round(seconds / rounds))


def bench_wrk(workers: int, seconds: int, connections: int, rounds: int = WRK_ROUNDS,
              database: Path | None = None) -> dict:
    """The hello world and the signed inbound webhook, ``rounds`` alternating runs of ``seconds / rounds``
    each, on one server; the ratio is the median of the rounds' ratios. Every inbound request is a new call:
    each round has its own slice of the pre-signed requests (wrk's threads each take every other line of
    it, and need not go at the same pace, so a round can't start where the last one's requests ended)."""
    if not shutil.which("wrk"):
        return {"skipped": "wrk is not installed (Debian package 'wrk'; .ci/run installs it)"}
    rounds, burst = split_rounds(seconds, rounds)
    with BenchServer(workers, database) as srv:
        url = srv.base + "/carriers/twilio/voice"
        validator = RequestValidator(TOKEN)
        numbers = _tracking_numbers()
        lines_path = srv.dir / "requests.tsv"
        per_round = 3000 * burst  # more than the server can take in the time
        count = per_round * rounds
        with lines_path.open("w") as fh:
            for i in range(count):
                params = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "b" * 32,
                          "From": f"+1512{2000000 + i % 8000000:07d}", "To": numbers[i % len(numbers)],
                          "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
                          "FromZip": "78701", "StirVerstat": "TN-Validation-Passed-A"}
                fh.write(f"{validator.compute_signature(url, params)}\t{urlencode(params)}\n")
        script = srv.dir / "inbound.lua"
        script.write_text(f'PATH = "/carriers/twilio/voice"\n{WRK_SCRIPT}')
        threads = WRK_THREADS
        _wrk(srv.base + "/bench/hello", 2, connections, threads)  # warm up
        sent, runs = 0, []
        for n in range(rounds):
            hello = _wrk(srv.base + "/bench/hello", burst, connections, threads)
            inbound = _wrk(url, burst, connections, threads, script,
                           [str(lines_path), str(threads), str(n * per_round), str((n + 1) * per_round)])
            sent += _requests_done(inbound["raw"])
            runs.append((hello, inbound))
        calls_recorded = _count_calls(srv.database_path) - _count_calls(database)
    ratios = [i.get("rps", 0) / h["rps"] if h.get("rps") else 0.0 for h, i in runs]
    hello_rps = [h.get("rps", 0.0) for h, _ in runs]
    inbound_rps = [i.get("rps", 0.0) for _, i in runs]
    p99s = [ms for _, i in runs if (ms := _wrk_ms(i.get("p99"))) is not None]
    hello_p99s = [ms for h, _ in runs if (ms := _wrk_ms(h.get("p99"))) is not None]
    inbound_p50s = [ms for _, i in runs if (ms := _wrk_ms(i.get("p50"))) is not None]
    return {"hello_rps": round(statistics.median(hello_rps), 1), "inbound_rps": round(statistics.median(inbound_rps), 1),
            # Latencies in ms, the median of the rounds like the rates (each round's figure beside it).
            "hello_p99_ms": _median_ms(hello_p99s), "inbound_p50_ms": _median_ms(inbound_p50s),
            "round_hello_p99_ms": hello_p99s, "round_inbound_p50_ms": inbound_p50s,
            "inbound_p99_max_ms": round(max(p99s), 2) if p99s else None,
            "inbound_non_2xx": sum(i.get("non_2xx", 0) for _, i in runs),
            "ratio": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3), "round_ratios": [round(r, 3) for r in ratios],
            "inbound_requests": sent, "calls_recorded": calls_recorded,
            "rounds": rounds, "seconds_per_round": burst, "connections": connections, "workers": workers}


def _median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _count_calls(database: Path | None) -> int:
    """Calls in a bench server's SQLite file (read after the run, before the directory goes); 0 for none."""
    import sqlite3

    from callbroker.calls.models import Call

    if database is None:
        return 0
    with closing(sqlite3.connect(database, timeout=20)) as con:
        return con.execute(f"SELECT COUNT(*) FROM {Call._meta.db_table}").fetchone()[0]


def _tracking_numbers() -> list[str]:
    import yaml

    data = yaml.safe_load(DEMO.read_text())
    return [t["number"] for t in data["tracking_numbers"]]


# --------------------------------------------------------------------------- (d) live counters

#: The throughput run: every thread of every process reserves a random one of these few targets, holds
#: it for an instant and releases it (giving the cap units back). Two slots each: most reservations
#: meet a competitor. Caps are set (so every reservation counts hour, day and month) but never reached.
CYCLE_TARGETS = 4
CYCLE_SPEC = {"concurrency_limit": 2, "hourly_cap": 10**6, "daily_cap": 10**7, "monthly_cap": 10**8}
#: The exactness run: every thread reserves (never releases) until each target refuses. With no release,
#: the total taken must equal the smallest limit exactly: more is a violation, fewer a lost reservation.
FILL_SPECS = (
    {"concurrency_limit": 3},
    {"hourly_cap": 5, "daily_cap": 7, "monthly_cap": 9},
    {"concurrency_limit": 10, "daily_cap": 4},
    {"concurrency_limit": 2, "monthly_cap": 6},
    {"hourly_cap": 0},
    {"concurrency_limit": 4, "hourly_cap": 4, "daily_cap": 4, "monthly_cap": 4},
    {"concurrency_limit": 25, "hourly_cap": 20},
)
FILL_ATTEMPTS = 40  # per thread and target: more than any limit above
BENCH_TZ = "America/Chicago"
LIMIT_FIELDS = ("concurrency_limit", "hourly_cap", "daily_cap", "monthly_cap")


def expected_successes(spec: dict, attempts: int) -> int:
    """Reservations that must succeed when ``attempts`` are made in all and none is released."""
    return min([attempts, *(spec[f] for f in LIMIT_FIELDS if spec.get(f) is not None)])


def expected_counters(spec: dict, taken: int) -> tuple[int, int, int, int]:
    """(active, hour, day, month) after ``taken`` reservations of a target and no release."""
    return (taken, *(taken if spec.get(f) is not None else 0 for f in LIMIT_FIELDS[1:]))


def core_target(spec: dict):
    """The core ``Target`` the counters see: an id and its limits (``None`` = unlimited)."""
    from callbroker.core.model import Target

    return Target(id=spec["id"], buyer_id=0, name=f"bench {spec['id']}", number="+15125550000",
                  **{f: spec.get(f) for f in LIMIT_FIELDS})


class CounterWorkers:
    """Worker processes with Django set up on ``env`` (``DATABASE_URL``, ``CALLBROKER_COUNTERS`` …) that
    drive ``callbroker.network.live`` on command; used by the benchmark and the tests.

    ``all("hammer", …)`` starts every thread of every process at once (one barrier); ``one(…)`` asks the
    first process. A shared array counts the holders of each target's slots while they hold them: a
    count above the limit is a violation seen from outside the backend.
    """

    def __init__(self, env: dict[str, str], *, processes: int = 2, threads: int = 4, timeout: float = 120.0) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: Django set up on ``env``, not ours
        self.timeout = timeout
        self.threads = threads
        self.barrier = ctx.Barrier(processes * threads)
        self.occupancy = ctx.Array("i", 256)
        self.workers = []
        for _ in range(processes):
            inbox, outbox = ctx.Queue(), ctx.Queue()
            proc = ctx.Process(target=_worker_main, args=(env, threads, self.barrier, self.occupancy, inbox, outbox),
                               daemon=True)
            proc.start()
            self.workers.append((proc, inbox, outbox))
        try:
            for worker in self.workers:
                self._answer(worker)
        except BaseException:
            self.close()
            raise

    def _answer(self, worker, busy_s: float = 0.0):
        """The worker's answer, waited for ``timeout`` seconds beyond the ``busy_s`` its command runs for."""
        import queue

        proc, _, outbox = worker
        deadline = time.monotonic() + busy_s + self.timeout
        while True:
            try:
                status, value = outbox.get(timeout=0.2)
                break
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"counter worker {proc.pid} exited (code {proc.exitcode})") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"counter worker {proc.pid} did not answer within {self.timeout:.0f} s") from None
        if status != "ok":
            raise RuntimeError(f"counter worker {proc.pid} failed:\n{value}")
        return value

    def one(self, command: str, payload: dict):
        self.workers[0][1].put((command, payload))
        return self._answer(self.workers[0])

    def all(self, command: str, payload: dict) -> list:
        """Every process's answer. A ``cycle`` hammer answers once its ``seconds`` are over: the wait is that
        long beyond ``timeout`` (a ``--counter-seconds`` above 120 ended in "did not answer within 120 s")."""
        for _, inbox, _ in self.workers:
            inbox.put((command, payload))
        busy_s = payload.get("seconds", 0.0) if payload.get("mode") == "cycle" else 0.0
        return [self._answer(worker, busy_s) for worker in self.workers]

    def close(self) -> None:
        for proc, inbox, _ in self.workers:
            if proc.is_alive():
                inbox.put(("stop", None))
        for proc, _, _ in self.workers:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join()

    def __enter__(self) -> CounterWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _worker_main(env, threads, barrier, occupancy, inbox, outbox) -> None:
    import traceback

    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbroker.settings")
    try:
        import django

        django.setup()
    except BaseException:
        outbox.put(("error", traceback.format_exc()))
        return
    outbox.put(("ok", os.getpid()))
    commands = {"targets": _cmd_targets, "reset": _cmd_reset, "read": _cmd_read, "hammer": _cmd_hammer,
                "reserve": _cmd_reserve, "release": _cmd_release}
    while True:
        command, payload = inbox.get()
        if command == "stop":
            return
        try:
            outbox.put(("ok", commands[command](payload, threads, barrier, occupancy)))
        except BaseException:
            outbox.put(("error", traceback.format_exc()))


def _cmd_targets(payload, *_) -> list[int]:
    """Make sure ``count`` bench targets exist (the SQL backend counts in their rows); return their ids."""
    from callbroker.network.loader import load_network
    from callbroker.network.models import Target

    keys = [f"bench-{i}" for i in range(payload["count"])]
    load_network({
        "version": 1,
        "campaigns": [{"key": "bench", "name": "Bench", "category": "plumbing", "payout": "1.00"}],
        "buyers": [{"key": "bench-buyer", "name": "Bench buyer", "timezone": payload["timezone"],
                    "targets": [{"key": key, "campaign": "bench", "name": key, "number": f"+1512555{8000 + i:04d}",
                                 "price": "1.00"} for i, key in enumerate(keys)]}],
    })
    ids = dict(Target.objects.filter(key__in=keys).values_list("key", "id"))
    return [ids[key] for key in keys]


def _cmd_reset(payload, *_) -> int:
    """Zero the counters of these targets (every period)."""
    from django.db import connection

    from callbroker.network import live

    ids = list(payload["ids"])
    backend = live.current_backend()
    if backend.name == "redis":
        store = backend.store
        for target_id in ids:
            keys = list(store.client.scan_iter(match=f"{store.prefix}{{t:{target_id}}}:*"))
            if keys:
                store.client.delete(*keys)
        # Zero and known: no rebuild from the database on the first reservation (live_redis, "known").
        store.mark_known((core_target({"id": target_id}), BENCH_TZ) for target_id in ids)
    else:
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {live.STATE} SET active_calls = 0 WHERE target_id IN ({marks})", ids)
            cursor.execute(f"DELETE FROM {live.USAGE} WHERE target_id IN ({marks})", ids)
    return len(ids)


def _cmd_read(payload, *_) -> dict[int, tuple[int, int, int, int]]:
    import datetime as dt

    from callbroker.network import live

    targets = [core_target(spec) for spec in payload["targets"]]
    counters, _ = live.read(targets, {t.id: payload["timezone"] for t in targets},
                            dt.datetime.fromisoformat(payload["now"]))
    return {tid: (c.active, c.hour, c.day, c.month) for tid, c in counters.items()}


def _cmd_reserve(payload, *_) -> str | None:
    """One ``live.reserve`` (in a transaction when ``atomic``): the refusal's code, or None."""
    import datetime as dt

    from django.db import transaction

    from callbroker.network import live

    target = core_target(payload["target"])
    with transaction.atomic() if payload.get("atomic", True) else _no_transaction():
        refused = live.reserve(target, payload["timezone"], dt.datetime.fromisoformat(payload["now"]))
    return refused.value if refused is not None else None


def _cmd_release(payload, *_) -> None:
    """One ``live.release`` (in a transaction when ``atomic``)."""
    import datetime as dt

    from django.db import transaction

    from callbroker.network import live

    target = core_target(payload["target"])
    with transaction.atomic() if payload.get("atomic", True) else _no_transaction():
        live.release(target if payload.get("known", True) else None, target.id, payload["timezone"],
                     dt.datetime.fromisoformat(payload["now"]), undo_usage=payload["undo_usage"])


def _no_transaction():
    from contextlib import nullcontext

    return nullcontext()


def _cmd_hammer(payload, threads, barrier, occupancy) -> dict:
    """All threads at once: ``cycle`` (reserve, hold, release; for ``seconds``) or ``fill`` (reserve only)."""
    import datetime as dt
    import random
    import traceback
    from collections import Counter as Tally

    from django.db import connection, transaction

    from callbroker.network import live

    targets = [core_target(spec) for spec in payload["targets"]]
    tz, now = payload["timezone"], dt.datetime.fromisoformat(payload["now"])
    hold_s = payload.get("hold_s", 0.0)

    def transact(operation):
        if payload["atomic"]:
            with transaction.atomic():
                return operation()
        return operation()

    def cycle(rng, out) -> None:
        deadline = time.monotonic() + payload["seconds"]
        while time.monotonic() < deadline:
            i = rng.randrange(len(targets))
            target = targets[i]
            t0 = time.perf_counter()
            refused = transact(lambda: live.reserve(target, tz, now))  # noqa: B023 - called at once
            t1 = time.perf_counter()
            if refused is not None:
                out["refused"][refused.value] += 1
                continue
            with occupancy.get_lock():
                occupancy[i] += 1
                if target.concurrency_limit is not None and occupancy[i] > target.concurrency_limit:
                    out["violations"] += 1
            if hold_s:
                time.sleep(rng.uniform(0, hold_s))
            with occupancy.get_lock():
                occupancy[i] -= 1
            t2 = time.perf_counter()
            transact(lambda: live.release(target, target.id, tz, now, undo_usage=True))  # noqa: B023
            t3 = time.perf_counter()
            out["pairs"] += 1
            out["reserve_s"].append(t1 - t0)
            out["pair_s"].append((t1 - t0) + (t3 - t2))

    def fill(rng, out) -> None:
        remaining = [payload["attempts"]] * len(targets)
        order = list(range(len(targets)))
        while any(remaining):
            rng.shuffle(order)
            for i in order:
                if not remaining[i]:
                    continue
                remaining[i] -= 1
                refused = transact(lambda: live.reserve(targets[i], tz, now))  # noqa: B023
                if refused is None:
                    out["taken"][i] += 1
                else:
                    out["refused"][refused.value] += 1
                    remaining[i] = 0  # nothing is released: a full target stays full

    results: list[dict] = [{} for _ in range(threads)]

    def thread_main(n: int) -> None:
        out = results[n] = {"pairs": 0, "reserve_s": [], "pair_s": [], "violations": 0, "refused": Tally(),
                            "taken": [0] * len(targets), "elapsed_s": 0.0, "error": ""}
        rng = random.Random(f"{payload.get('seed', 0)}:{os.getpid()}:{n}")
        try:
            backend = live.current_backend()  # connect before the start
            if payload["atomic"]:
                transact(lambda: None)
            if backend.name == "redis":
                backend.store.ping()
            barrier.wait(timeout=120)
            started = time.perf_counter()
            (cycle if payload["mode"] == "cycle" else fill)(rng, out)
            out["elapsed_s"] = time.perf_counter() - started
        except BaseException:
            barrier.abort()
            out["error"] = traceback.format_exc()
        finally:
            connection.close()

    pool = [threading.Thread(target=thread_main, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    merged = {"pairs": 0, "reserve_s": [], "pair_s": [], "violations": 0, "refused": Tally(),
              "taken": [0] * len(targets), "elapsed_s": 0.0, "errors": []}
    for out in results:
        merged["pairs"] += out["pairs"]
        merged["reserve_s"] += out["reserve_s"]
        merged["pair_s"] += out["pair_s"]
        merged["violations"] += out["violations"]
        merged["refused"].update(out["refused"])
        merged["taken"] = [a + b for a, b in zip(merged["taken"], out["taken"], strict=True)]
        merged["elapsed_s"] = max(merged["elapsed_s"], out["elapsed_s"])
        if out["error"]:
            merged["errors"].append(out["error"])
    merged["refused"] = dict(merged["refused"])
    return merged


def measure_counters(env: dict[str, str], *, seconds: float, processes: int = 2, threads: int = 4,
                     atomic: bool = True, hold_s: float = 0.0) -> dict:
    """Throughput and exactness of one backend (``env`` names it); see CYCLE_SPEC and FILL_SPECS."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)  # fixed for the run: no period ends halfway
    base = {"timezone": BENCH_TZ, "now": now.isoformat(), "atomic": atomic}
    with CounterWorkers(env, processes=processes, threads=threads) as workers:
        ids = workers.one("targets", {"count": CYCLE_TARGETS + len(FILL_SPECS), "timezone": BENCH_TZ})
        cycle = [{**CYCLE_SPEC, "id": i} for i in ids[:CYCLE_TARGETS]]
        fill = [{**spec, "id": i} for spec, i in zip(FILL_SPECS, ids[CYCLE_TARGETS:], strict=True)]
        workers.one("reset", {"ids": ids})
        runs = workers.all("hammer", {**base, "mode": "cycle", "targets": cycle, "seconds": seconds, "hold_s": hold_s})
        after_cycle = workers.one("read", {**base, "targets": cycle})
        fills = workers.all("hammer", {**base, "mode": "fill", "targets": fill, "attempts": FILL_ATTEMPTS})
        after_fill = workers.one("read", {**base, "targets": fill})
        workers.one("reset", {"ids": ids})
    errors = [e for r in (*runs, *fills) for e in r["errors"]]
    if errors:
        raise RuntimeError("counter workers failed:\n" + "\n".join(errors))
    pairs = sum(r["pairs"] for r in runs)
    elapsed = max(r["elapsed_s"] for r in runs) or seconds
    pair_s = [x for r in runs for x in r["pair_s"]]
    reserve_s = [x for r in runs for x in r["reserve_s"]]
    refused: dict[str, int] = {}
    for r in runs:
        for reason, n in r["refused"].items():
            refused[reason] = refused.get(reason, 0) + n
    attempts_total = FILL_ATTEMPTS * processes * threads
    taken = [sum(r["taken"][i] for r in fills) for i in range(len(fill))]
    expected = [expected_successes(spec, attempts_total) for spec in fill]
    over = sum(max(0, t - e) for t, e in zip(taken, expected, strict=True))
    under = sum(max(0, e - t) for t, e in zip(taken, expected, strict=True))
    counter_mismatches = [spec["id"] for spec, t in zip(fill, taken, strict=True)
                          if tuple(after_fill[spec["id"]]) != expected_counters(spec, t)]
    leftovers = [tid for tid, values in after_cycle.items() if any(values)]
    return {
        "pairs": pairs,
        "pairs_per_s": round(pairs / elapsed, 1),
        "pair_p50_ms": round(_pct(pair_s, 0.50) * 1000, 3),
        "pair_p99_ms": round(_pct(pair_s, 0.99) * 1000, 3),
        "reserve_p50_ms": round(_pct(reserve_s, 0.50) * 1000, 3),
        "reserve_p99_ms": round(_pct(reserve_s, 0.99) * 1000, 3),
        "refused": refused,
        "violations": sum(r["violations"] for r in runs) + over,
        "lost_reservations": under,
        "counter_mismatches": counter_mismatches,
        "leftover_after_release": leftovers,
        "fill_taken": taken,
        "fill_expected": expected,
    }


class PrivatePostgres:
    """A throwaway PostgreSQL on loopback for the benchmark (``url`` is "" when PostgreSQL is not installed).

    Durable as a production server is: the figures include the commit's WAL flush.
    """

    def __init__(self) -> None:
        self.url = ""
        self.server: local_services.PostgresServer | None = None

    def __enter__(self) -> PrivatePostgres:
        self.server = local_services.start_postgres(Path(tempfile.mkdtemp(prefix="callbroker-bench-pg-")),
                                                    durable=True, max_connections=100)
        if self.server is not None:
            self.url = self.server.create_database("callbroker_bench")
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.directory, ignore_errors=True)


class PrivateRedis:
    """A throwaway Redis on loopback (``url`` is "" when redis-server is not installed)."""

    def __init__(self) -> None:
        self.url = ""
        self.server: local_services.RedisServer | None = None

    def __enter__(self) -> PrivateRedis:
        self.server = local_services.start_redis(Path(tempfile.mkdtemp(prefix="callbroker-bench-redis-")))
        if self.server is not None:
            self.url = self.server.url
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
            shutil.rmtree(self.server.directory, ignore_errors=True)


def migrate(env: dict[str, str]) -> None:
    """``callbroker migrate`` on the database ``env`` names."""
    subprocess.run([sys.executable, "-m", "callbroker.cli", "migrate", "--verbosity", "0"],
                   env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)


def bench_counters(seconds: float = 5.0, *, processes: int = 2, threads: int = 4, database_url: str = "",
                   redis_url: str = "") -> dict:
    """(d) The SQL backend on PostgreSQL against the Redis backend, same load, same checks."""
    from contextlib import ExitStack

    results: dict = {"processes": processes, "threads": threads, "seconds": seconds,
                     "targets": CYCLE_TARGETS, "concurrency_limit": CYCLE_SPEC["concurrency_limit"]}
    with ExitStack() as stack:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="callbroker-bench-counters-"))
        database_url = database_url or stack.enter_context(PrivatePostgres()).url
        redis_url = redis_url or stack.enter_context(PrivateRedis()).url
        base = {"CALLBROKER_DATA_DIR": data_dir, "DATABASE_URL": database_url, "CALLBROKER_ENV": "development",
                "CALLBROKER_LOG_LEVEL": "ERROR", "CALLBROKER_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:"}
        migrate(base)
        # The SQL backend twice: as production runs it (every commit waits for its WAL flush: the row lock
        # is held until then), and with synchronous_commit=off (locks and round trips alone, no disk).
        no_flush = database_url + ("&" if "?" in database_url else "?") + "options=-c%20synchronous_commit%3Doff"
        runs = (("sql", "sql", database_url), ("sql_no_flush", "sql", no_flush), ("redis", "redis", database_url))
        for key, backend, db_url in runs:
            if backend == "sql" and not database_url:
                results[key] = {"skipped": "PostgreSQL is not installed (Debian package 'postgresql')"}
                continue
            if backend == "redis" and not redis_url:
                results[key] = {"skipped": "redis-server is not installed (Debian package 'redis-server')"}
                continue
            env = {**base, "DATABASE_URL": db_url, "CALLBROKER_COUNTERS": backend,
                   "REDIS_URL": redis_url if backend == "redis" else ""}
            # In a transaction as on the call path; not on SQLite, where BEGIN IMMEDIATE would serialise the
            # Redis run on the database's write lock.
            results[key] = measure_counters(env, seconds=seconds, processes=processes, threads=threads,
                                            atomic=bool(database_url))
    return results


def run(parts: set[str], *, workers: int | None = None, calls: int = 2000, concurrency: int | None = None,
        rate: float = 200.0,
        decisions: int = 20000, seconds: int = 15, connections: int = 32, counter_seconds: float = 5.0,
        counter_processes: int = 2, counter_threads: int = 4, database_url: str = "", redis_url: str = "",
        nodes: int = 0, drivers: int | None = None, wrk_rounds: int = WRK_ROUNDS, history: int = 0,
        out=sys.stdout) -> dict:
    workers = workers or default_workers()
    results: dict = {"machine": _machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    def say(text: str) -> None:
        out.write(text + "\n")  # one write: a management command's OutputWrapper adds its own newline otherwise
        out.flush()

    say(f"callbroker bench on {results['machine']}")
    with ExitStack() as stack:
        database = None
        if history > 0 and parts & {"e2e", "wrk"}:
            say(f"    (b) and (c) servers start with {counted(history, 'past call', grouped=True)} "
                f"({history_span()}) …")
            began = time.monotonic()
            database = stack.enter_context(history_database(
                history,
                lambda done, total: say(f"      {done:,} of {counted(total, 'past call', grouped=True)} "
                                        "written")))
            say(f"      in {time.monotonic() - began:.0f} s")
            results["history_calls"] = history
        _run_parts(parts, results, say, workers=workers, calls=calls, concurrency=concurrency, rate=rate,
                   decisions=decisions, seconds=seconds, connections=connections, counter_seconds=counter_seconds,
                   counter_processes=counter_processes, counter_threads=counter_threads, database_url=database_url,
                   redis_url=redis_url, nodes=nodes, drivers=drivers, wrk_rounds=wrk_rounds, database=database)
    return results


def history_span() -> str:
    from callbroker.ops import history

    return (f"in the {history.DAYS} days before the last {history.ENDS_DAYS_AGO}, "
            f"{len(history.EVENT_KINDS)} events each")


def _run_parts(parts: set[str], results: dict, say: Callable[[str], None], *, workers: int, calls: int,
               concurrency: int | None, rate: float, decisions: int, seconds: int, connections: int,
               counter_seconds: float, counter_processes: int, counter_threads: int, database_url: str,
               redis_url: str, nodes: int, drivers: int | None, wrk_rounds: int, database: Path | None) -> None:
    if "core" in parts:
        say(f"(a) core routing: 1,000 targets, areas up to 2,000 ZIPs, {decisions:,} decisions …")
        core = results["core"] = bench_core_part(decisions)
        say(f"    {core['per_second']:,.0f} decisions/s   p50 {core['p50_us']:.1f} µs   p99 {core['p99_us']:.1f} µs"
            f"   (target p99 ≤ 200 µs)")
    if "e2e" in parts:
        say(f"(b) end to end: {counted(calls, 'call', grouped=True)} through the emulator, "
            f"{counted(workers, 'worker')}, each run on a fresh server"
            f"{' with the past calls' if database else ''} …")
        in_flight = concurrency or CALLS_IN_FLIGHT_PER_WORKER * workers
        e2e = results["e2e"] = bench_end_to_end(workers, calls, in_flight, drivers, database=database)
        say(f"    the demo network at {e2e['local_time_central']} Central time: "
            f"{e2e['bridged_share']:.0%} of the calls talked to a buyer (the rest: IVR hang-ups, after-hours "
            f"and capped fallbacks, unknown numbers)")
        say(f"    as fast as it answers, {counted(in_flight, 'call')} in flight: "
            f"{e2e['lifecycles_per_s']} call lifecycles/s"
            f" ({e2e['webhooks']:,} webhooks, {e2e['errors']} errors)   webhook p50 {e2e['webhook_p50_ms']} ms"
            f"   p99 {e2e['webhook_p99_ms']} ms   (target ≥ 200/s with p99 ≤ 25 ms)")
        say(_cpu_line(e2e))
        if rate:
            paced = results["e2e_paced"] = bench_end_to_end(workers, calls, PACED_CONCURRENCY, drivers, rate=rate,
                                                            database=database)
            say(f"    one new call every 1/{rate:g} s: {paced['lifecycles_per_s']} call lifecycles/s"
                f" ({paced['webhooks']:,} webhooks, {paced['errors']} errors)   webhook p50"
                f" {paced['webhook_p50_ms']} ms   p99 {paced['webhook_p99_ms']} ms   (target p99 ≤ 25 ms at 200/s)")
            say(_cpu_line(paced))
            if paced.get("server_metrics_error"):
                say(f"      the workers' own histogram: not read ({paced['server_metrics_error']})")
            elif paced["server_webhooks"]:
                say(f"      the workers' own histogram (request in Django to answer, no wait for a free worker):"
                    f" p99 ≤ {paced['server_p99_le_ms']:g} ms, {paced['server_within_25ms']:,} of"
                    f" {paced['server_webhooks']:,} within 25 ms")
            e2e["server_pss_peak_mb"] = max(e2e["server_pss_peak_mb"], paced["server_pss_peak_mb"])
            e2e["server_rss_peak_mb"] = max(e2e["server_rss_peak_mb"], paced["server_rss_peak_mb"])
        say(f"    server memory: RSS peak {e2e['server_rss_peak_mb']} MB (idle {e2e['server_rss_idle_mb']} MB),"
            f" PSS peak {e2e['server_pss_peak_mb']} MB   (target ≤ 250 MB)")
    if "wrk" in parts:
        rounds, burst = split_rounds(seconds, wrk_rounds)
        say(f"(c) wrk: signed inbound webhook vs hello world, {rounds} alternating rounds of "
            f"{burst} s each, {connections} connections …")
        w = results["wrk"] = bench_wrk(workers, seconds, connections, rounds, database=database)
        if "skipped" in w:
            say(f"    skipped: {w['skipped']}")
        else:
            say(f"    hello world {w['hello_rps']:,.0f} req/s   inbound webhook {w['inbound_rps']:,.0f} req/s "
                f"(medians of the rounds; inbound p99 ≤ {w['inbound_p99_max_ms']} ms, "
                f"non-2xx {w['inbound_non_2xx']})   ratio {w['ratio']} (rounds {w['ratio_min']}–{w['ratio_max']})"
                f"   (target ≥ 0.4)")
            if w["calls_recorded"] < w["inbound_requests"]:  # a round outran its slice of signed requests
                say(f"    WARNING: {w['inbound_requests']:,} inbound requests answered but {w['calls_recorded']:,} "
                    "calls recorded: some CallSids were repeated (answered from the log), the ratio flatters")
    if "counters" in parts:
        say(f"(d) live counters: {counter_processes} processes × {counted(counter_threads, 'thread')} each "
            "reserve+release "
            f"{CYCLE_TARGETS} targets (concurrency {CYCLE_SPEC['concurrency_limit']} each, caps counted) for "
            f"{counter_seconds:g} s, then fill {len(FILL_SPECS)} targets to their limits …")
        c = results["counters"] = bench_counters(counter_seconds, processes=counter_processes,
                                                 threads=counter_threads, database_url=database_url,
                                                 redis_url=redis_url)
        for backend, label in (("sql", "SQL on PostgreSQL"), ("sql_no_flush", "  same, no WAL flush"),
                               ("redis", "Redis (Lua)")):
            r = c[backend]
            if "skipped" in r:
                say(f"    {label}: skipped: {r['skipped']}")
                continue
            correct = not (r["violations"] or r["lost_reservations"] or r["counter_mismatches"]
                           or r["leftover_after_release"])
            say(f"    {label:20} {r['pairs_per_s']:>7,.0f} reserve+release/s   pair p50 {r['pair_p50_ms']:.2f} ms"
                f"  p99 {r['pair_p99_ms']:.2f} ms   reserve p50 {r['reserve_p50_ms']:.2f} ms"
                f"  p99 {r['reserve_p99_ms']:.2f} ms   refused full {sum(r['refused'].values()):,}")
            say(f"    {'':20} violations {r['violations']}   lost reservations {r['lost_reservations']}   "
                f"counter mismatches {len(r['counter_mismatches'])}   fills {r['fill_taken']} "
                f"(expected {r['fill_expected']})   {'CORRECT' if correct else 'NOT CORRECT'}")
        if "skipped" not in c["sql"] and "skipped" not in c["redis"]:
            ratios = [c["redis"]["pairs_per_s"] / c[k]["pairs_per_s"] if c[k]["pairs_per_s"] else 0
                      for k in ("sql", "sql_no_flush")]
            say(f"    Redis / SQL throughput: {ratios[0]:.1f}× (durable commits), {ratios[1]:.1f}× (no WAL flush)")
    if nodes:
        in_flight = concurrency or NODES_CALLS_IN_FLIGHT
        say(f"(e) {counted(nodes, 'app node')} on PostgreSQL + Redis: {counted(calls, 'call', grouped=True)} "
            f"through the emulator, {in_flight} concurrent, {counted(workers, 'worker')} per node …")
        n = results["nodes"] = bench_nodes(nodes, calls, in_flight, workers)
        if "skipped" in n:
            say(f"    skipped: {n['skipped']}")
        else:
            say(f"    {n['lifecycles_per_s']} call lifecycles/s "
                f"({counted(n['calls'], 'call', grouped=True)}, "
                f"{counted(n['webhooks'], 'webhook', grouped=True)}, "
                f"{n['errors']} errors, {n['recorded']:,} recorded)   webhook p50 {n['webhook_p50_ms']} ms   "
                f"p99 {n['webhook_p99_ms']} ms")
            say(f"    cap or concurrency violations: {n['violations']} (must be 0)")
            for example in n["violation_examples"]:
                say(f"      {example}")


def _cpu_line(e2e: dict) -> str:
    line = (f"      CPU per webhook: server {e2e['server_cpu_ms_per_webhook']} ms, emulator"
            f" {e2e['emulator_cpu_ms_per_webhook']} ms (same machine); {e2e['cores_busy']} of"
            f" {os.cpu_count()} cores busy on average")
    before, after = e2e.get("hello_rps_before"), e2e.get("hello_rps_after")
    if before and after:
        line += f"; hello world {before:,.0f} req/s before, {after:,.0f} after (the machine's speed then)"
    return line


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model or 'unknown CPU'}, Python {sys.version.split()[0]}"


def main_json(results: dict) -> str:
    return json.dumps({k: v for k, v in results.items()}, indent=2, default=str)





def bench_nodes(nodes: int, calls: int, concurrency: int, workers: int) -> dict:
    """(e) Several app nodes on PostgreSQL + Redis, driven together; limits audited afterwards."""
    import json as _json

    import yaml

    from callbroker.ops.audit import limit_violations
    from callbroker.sim.emulator import Carrier
    from callbroker.sim.traffic import generate_day, run_traffic

    network = yaml.safe_load(DEMO.read_text())
    with PrivatePostgres() as pg, PrivateRedis() as redis_server:
        if not pg.url or not redis_server.url:
            return {"skipped": "PostgreSQL and Redis are needed (Debian packages 'postgresql', 'redis-server')"}
        base_dir = Path(tempfile.mkdtemp(prefix="callbroker-bench-nodes-"))
        env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_URL": redis_server.url, "CALLBROKER_ENV": "production",
               "CALLBROKER_SECRET_KEY": uuid.uuid4().hex, "TWILIO_AUTH_TOKEN": TOKEN,
               "TWILIO_ACCOUNT_SID": "", "TWILIO_ACCOUNT_TOKENS": "", "CALLBROKER_LOG_LEVEL": "ERROR",
               "CALLBROKER_DATA_DIR": str(base_dir / "cli"),
               "CALLBROKER_PUBLIC_URL": "http://127.0.0.1"}  # the commands' (production needs one): no webhooks
        cli = [sys.executable, "-m", "callbroker.cli"]
        subprocess.run([*cli, "migrate", "--verbosity", "0"], env=env, check=True)
        subprocess.run([*cli, "network", "load", str(DEMO)], env=env, check=True, stdout=subprocess.DEVNULL)
        procs, urls = [], []
        try:
            for i in range(nodes):
                port = local_services.free_port()
                node_env = {**env, "CALLBROKER_DATA_DIR": str(base_dir / f"node{i}"), "CALLBROKER_NODE": f"node{i}",
                            "CALLBROKER_PUBLIC_URL": f"http://127.0.0.1:{port}"}  # what its emulator signs
                Path(node_env["CALLBROKER_DATA_DIR"]).mkdir(parents=True)
                procs.append(start_server("127.0.0.1", port, workers, env=node_env,
                                          log_path=base_dir / f"node{i}.log"))
                urls.append(f"http://127.0.0.1:{port}")
            planned = generate_day(network, calls=calls, seed=17)
            shares = [planned[i::nodes] for i in range(nodes)]
            stats: list = [None] * nodes

            def drive(i: int) -> None:
                carrier = Carrier(urls[i], TOKEN, seed=i, time_scale=0.0)
                stats[i] = run_traffic(carrier, shares[i], rate=None, concurrency=max(1, concurrency // nodes))

            started = time.perf_counter()
            threads = [threading.Thread(target=drive, args=(i,)) for i in range(nodes)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
        finally:
            for proc in procs:
                stop_server(proc)
        listed = subprocess.run([*cli, "calls", "list", "--json", "--limit", "0"], env=env, check=True,
                                capture_output=True, text=True).stdout
        recorded = _json.loads(listed)
        shutil.rmtree(base_dir, ignore_errors=True)
    latencies = [ms for s in stats for ms in s.latencies_ms]
    violations = limit_violations(network, recorded)
    return {
        "nodes": nodes, "workers_per_node": workers, "calls": sum(s.calls for s in stats),
        "errors": sum(s.errors for s in stats), "recorded": len(recorded),
        "lifecycles_per_s": round(sum(s.calls for s in stats) / wall, 1) if wall else 0,
        "webhooks": len(latencies), "webhook_p50_ms": round(_pct(latencies, 0.50), 2),
        "webhook_p99_ms": round(_pct(latencies, 0.99), 2), "violations": len(violations),
        "violation_examples": violations[:5],
    }
