"""`callbroker bench`: prints the performance figures (see docs/benchmarks.md and docs/production.md).

Counts out of range (``--decisions 0``, ``--calls 0``, ``--workers 0`` …) are refused by the option parser,
as ``run`` and ``sim`` refuse theirs, before any part starts: taken as given, ``--decisions 0`` ended the
core part in an ``IndexError`` traceback, and the others would start servers to measure nothing.
``--connections`` needs one per wrk thread (``bench.WRK_THREADS``, 2): wrk refuses fewer ("number of
connections must be >= threads"), and (c) then measured nothing, ``--connections 1`` printing 0 req/s and a
ratio of 0 as figures. ``--counter-seconds`` (seconds, not a count) is refused below 0.1 (0 or less
measured nothing and printed 0 reserve+release/s as figures), and ``nan`` or ``inf``; a long one runs as
long as asked (the counter workers' answer is waited for that long beyond their usual 120 s, where anything
over about 115 s ended in "did not answer within 120 s", a traceback). ``--history -1`` is refused by the
parser too (it was refused once the command ran, ending 1 without the usage line)."""

from django.core.management.base import BaseCommand, CommandError

from callbroker.arguments import at_least
from callbroker.ops import bench
from callbroker.ops.history import NotEnoughSpace

PARTS = ["core", "e2e", "wrk", "counters"]

#: (d)'s shortest run: 0 or less measured nothing and printed "0 reserve+release/s" as the figures.
COUNTER_SECONDS_LEAST = 0.1


class Command(BaseCommand):
    help = ("Benchmark: (a) core routing, (b) end-to-end calls through the emulator, (c) wrk on the webhook, "
            "(d) live counters: SQL on PostgreSQL against Redis.")

    def add_arguments(self, parser):
        parser.add_argument("--only", choices=PARTS, action="append",
                            help="Run only these parts (repeatable). Default: core, e2e and wrk; "
                                 "'counters' runs only when asked for.")
        parser.add_argument("--workers", type=at_least(1, int), default=None, help="Server workers (default: cores).")
        parser.add_argument("--calls", type=at_least(1, int), default=2000, help="Calls for the end-to-end part.")
        parser.add_argument("--concurrency", type=at_least(1, int), default=None,
                            help="Calls in flight in the end-to-end run as fast as the server answers "
                                 f"(default: {bench.CALLS_IN_FLIGHT_PER_WORKER} per worker; (e): 16).")
        parser.add_argument("--rate", type=at_least(0), default=200.0,
                            help="Calls started per second in the paced end-to-end run (0: skip it).")
        parser.add_argument("--decisions", type=at_least(1, int), default=20000, help="Routing decisions for the core part.")
        parser.add_argument("--seconds", type=at_least(1, int), default=15,
                            help="(c): seconds of wrk on each side (hello world, inbound webhook), split into "
                                 "--wrk-rounds alternating runs.")
        parser.add_argument("--wrk-rounds", type=at_least(1, int), default=bench.WRK_ROUNDS,
                            help="(c): alternating runs of each side; the ratio printed is their median.")
        parser.add_argument("--connections", type=at_least(bench.WRK_THREADS, int), default=32,
                            help=f"wrk connections ({bench.WRK_THREADS} or more: one per wrk thread).")
        parser.add_argument("--counter-seconds", type=at_least(COUNTER_SECONDS_LEAST), default=5.0,
                            help="Duration of each counters throughput run (per backend; "
                                 f"{COUNTER_SECONDS_LEAST:g} or more).")
        parser.add_argument("--counter-processes", type=at_least(1, int), default=2, help="Processes hammering the counters.")
        parser.add_argument("--counter-threads", type=at_least(1, int), default=4, help="Threads per counters process.")
        parser.add_argument("--database-url", default="",
                            help="counters: a scratch PostgreSQL database to use (migrated, bench targets added) "
                                 "instead of a private server")
        parser.add_argument("--redis-url", default="",
                            help="counters: a scratch Redis to use instead of a private server")
        parser.add_argument("--nodes", type=at_least(0, int), default=0,
                            help="Run N app nodes on a private PostgreSQL + Redis and drive them together "
                                 "(with --calls, --concurrency, --workers per node); other parts only if --only.")
        parser.add_argument("--drivers", type=at_least(1, int), default=None,
                            help="Emulator processes placing the end-to-end calls (default: cores).")
        parser.add_argument("--history", type=at_least(0, int), default=0, metavar="CALLS",
                            help="(b) and (c): start each server's database with this many past calls (with their "
                                 "events and attempts, older than every cap and duplicate window): the tables of "
                                 "an installation in use. Default 0: an empty database.")
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON at the end.")

    def handle(self, *args, only, workers, calls, concurrency, rate, decisions, seconds, connections, counter_seconds,
               counter_processes, counter_threads, database_url, redis_url, nodes, drivers, json, wrk_rounds,
               history, **options):
        parts = set(only or ([] if nodes else ["core", "e2e", "wrk"]))
        try:
            results = bench.run(parts, workers=workers, calls=calls, concurrency=concurrency, rate=rate,
                                decisions=decisions, seconds=seconds, connections=connections,
                                counter_seconds=counter_seconds, counter_processes=counter_processes,
                                counter_threads=counter_threads, database_url=database_url, redis_url=redis_url,
                                nodes=nodes, drivers=drivers, wrk_rounds=wrk_rounds, history=history, out=self.stdout)
        except NotEnoughSpace as exc:  # checked before anything is written
            raise CommandError(str(exc)) from exc
        if json:
            self.stdout.write(bench.main_json(results))
