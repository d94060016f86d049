"""`callbroker spool status|replay`: the local-disk spool of calls handled while the database was away."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from callbroker.calls import replay, spool
from callbroker.words import counted


class Command(BaseCommand):
    help = "Show or replay the calls spooled to this node's disk while the database was unreachable."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="List the spooled calls: each file's events, when it was last written "
                                     "and why it is still there.")
        replay_parser = sub.add_parser("replay", help="Replay spooled calls into the database now.")
        replay_parser.add_argument("--all", action="store_true",
                                   help="Also finish calls whose final status has not arrived yet (their files "
                                        "are deleted; a final status alone is kept as a call, not billable; "
                                        "events that can't be applied are skipped).")

    def handle(self, *args, action, **options):
        if action == "status":
            files = spool.files()
            # Not made here: run by root, it would be root's, and the service could not write its spool.
            where = spool.directory(create=False)
            self.stdout.write(f"spool: {where}  calls: {len(files)}  events: {spool.depth()}")
            holders = spool.held_in_memory()
            if holders:
                self.stdout.write(f"  events held in memory by process(es) {holders}: the disk refused them; "
                                  "they are written out (and replayed) once it takes writes again")
            for path in files:
                self._describe(path)
            return
        report = replay.replay_ready(force=options["all"])
        self.stdout.write(f"replayed {counted(report.calls, 'call')} ({counted(report.events, 'event')}, "
                          f"{report.skipped_duplicates} already recorded); {report.waiting} still in "
                          "progress or waiting for events of "
                          "another node")
        if report.errors:
            raise CommandError("; ".join(report.errors))

    def _describe(self, path) -> None:
        """One spooled call: its events, when its file was last written, and why it is still there."""
        try:
            events = spool.read(path)
            written = replay.in_words(time.time() - path.stat().st_mtime)
        except FileNotFoundError:
            return  # replayed meanwhile
        try:
            why = replay.why_waiting(path)
        except FileNotFoundError:
            return
        except DatabaseError as exc:  # an outage, or a database never migrated: the list is shown all the same
            why = f"unknown: reading the database failed ({exc})"
        kinds = ", ".join(e.get("kind", "?") for e in events)
        self.stdout.write(f"  {path.stem}  {counted(len(events), 'event')}: {kinds}  (written {written} ago)")
        self.stdout.write(f"    waiting: {why}")
