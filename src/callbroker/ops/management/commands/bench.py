"""`callbroker bench`: prints the performance figures (see docs/benchmarks.md)."""

from django.core.management.base import BaseCommand

from callbroker.ops import bench


class Command(BaseCommand):
    help = "Benchmark: (a) core routing, (b) end-to-end calls through the emulator, (c) wrk on the webhook."

    def add_arguments(self, parser):
        parser.add_argument("--only", choices=["core", "e2e", "wrk"], action="append",
                            help="Run only these parts (repeatable). Default: all.")
        parser.add_argument("--workers", type=int, default=None, help="Server workers (default: cores).")
        parser.add_argument("--calls", type=int, default=2000, help="Calls for the end-to-end part.")
        parser.add_argument("--concurrency", type=int, default=16, help="Concurrent calls end to end.")
        parser.add_argument("--decisions", type=int, default=20000, help="Routing decisions for the core part.")
        parser.add_argument("--seconds", type=int, default=10, help="Duration of each wrk run.")
        parser.add_argument("--connections", type=int, default=32, help="wrk connections.")
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON at the end.")

    def handle(self, *args, only, workers, calls, concurrency, decisions, seconds, connections, json, **options):
        parts = set(only or ["core", "e2e", "wrk"])
        results = bench.run(parts, workers=workers, calls=calls, concurrency=concurrency, decisions=decisions,
                            seconds=seconds, connections=connections, out=self.stdout)
        if json:
            self.stdout.write(bench.main_json(results))
