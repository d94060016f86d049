"""``callbroker partitions ensure|list|check``: the monthly partitions of the call table (PostgreSQL).

Run ``ensure`` monthly from cron or a systemd timer (it is idempotent); ``check`` exits non-zero when
maintenance is overdue, for monitoring. On SQLite there is nothing to partition and every action says
so and succeeds, so the same timer works on an embedded install.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from callbroker.calls import partitions
from callbroker.ops.commands import reading_the_database


def _month(part: partitions.Partition) -> str:
    if part.is_default:
        return "default (anything outside the months below)"
    start = f"{part.start:%Y-%m-%d}" if part.start else "MINVALUE"
    end = f"{part.end:%Y-%m-%d}" if part.end else "MAXVALUE"
    return f"[{start}, {end}) UTC"


class Command(BaseCommand):
    help = "Create (ensure), list or check the monthly partitions of the call table on PostgreSQL."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{ensure,list,check}")
        ensure = actions.add_parser("ensure", help="Create this month's and the next months' partitions "
                                                   "(and move calls out of the default partition).")
        ensure.add_argument("--months-ahead", type=int, default=partitions.MONTHS_AHEAD, metavar="N",
                            help="Months after the current one to prepare "
                                 f"(default {partitions.MONTHS_AHEAD}).")
        listing = actions.add_parser("list", help="Every partition with its month and estimated rows.")
        listing.add_argument("--json", action="store_true", help="A JSON array instead of a table.")
        actions.add_parser("check", help="Exit 1 when next month has no partition or the default partition "
                                         "holds calls.")

    def handle(self, *args, **options) -> None:
        with reading_the_database("the call partitions"):  # the monthly timer's alert: one line
            self.act(options)

    def act(self, options: dict) -> None:
        if not partitions.is_partitioned():
            if options["action"] == "list" and options.get("json"):
                self.stdout.write("[]")
            elif partitions.supported():
                raise CommandError("The call table is not partitioned. Run: callbroker migrate")
            else:
                self.stdout.write("The call table is partitioned on PostgreSQL only; nothing to do on this "
                                  "database.")
            return
        run = {"ensure": self.ensure, "list": self.list_partitions, "check": self.check_partitions}
        run[options["action"]](options)

    def ensure(self, options: dict) -> None:
        if options["months_ahead"] < 0:
            raise CommandError("--months-ahead must be 0 or more.")
        created = partitions.ensure(options["months_ahead"])
        if created:
            self.stdout.write(f"Created {len(created)} partition(s): {', '.join(created)}")
        else:
            self.stdout.write("All partitions already exist.")

    def list_partitions(self, options: dict) -> None:
        parts = partitions.partitions()
        if options["json"]:
            self.stdout.write(json.dumps([
                {"name": p.name, "default": p.is_default,
                 "from": p.start.isoformat() if p.start else None, "to": p.end.isoformat() if p.end else None,
                 "estimated_rows": p.estimated_rows} for p in parts
            ], indent=2))
            return
        self.stdout.write(f"{'PARTITION':<28}{'RANGE':<48}ROWS (estimated)")
        for part in parts:
            rows = "?" if part.estimated_rows < 0 else str(part.estimated_rows)
            self.stdout.write(f"{part.name:<28}{_month(part):<48}{rows}")
        stray = partitions.default_rows()
        if stray:
            self.stderr.write(f"WARNING: {stray} call(s) in the default partition: run "
                              "`callbroker partitions ensure` to give their months a partition.")

    def check_partitions(self, options: dict) -> None:
        problems = []
        next_month = partitions.add_months(partitions.month_start(timezone.now()), 1)
        months = {p.start for p in partitions.partitions() if not p.is_default}
        if next_month not in months:
            problems.append(f"no partition for {next_month:%Y-%m}")
        stray = partitions.default_rows()
        if stray:
            problems.append(f"{stray} call(s) in the default partition")
        if problems:
            raise CommandError("Partition maintenance overdue: " + "; ".join(problems)
                               + ". Run: callbroker partitions ensure")
        self.stdout.write("OK: partitions ready through next month; default partition empty.")
