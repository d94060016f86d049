"""``callbroker network load FILE [--prune] [--check]``, ``callbroker network export [-o FILE]`` and
``callbroker network prune-cap-counts``."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from callbroker.network import cap_counts
from callbroker.network.loader import KINDS, counted, dump_network, export_network, load_network
from callbroker.network.parsing import NetworkError
from callbroker.ops.commands import reading_the_database
from callbroker.words import counted as in_words

EXPORT_HEADER = "# callbroker network file (exported). Every key is described in docs/network-file.md.\n"


def refuse_empty_paths(options: dict[str, Any]) -> None:
    """An empty path (a script's unset variable) is refused naming it: ``load ""`` read the current
    directory ("``.: is a directory``") and ``export -o ""`` wrote to standard output, as if no file
    had been given."""
    if options["action"] == "load" and not options["file"].strip():
        raise CommandError("FILE: give the network file's path (it is empty).")
    if options["action"] == "export" and options.get("output") is not None and not options["output"].strip():
        raise CommandError("-o/--output: give the file to write (it is empty); leave the option out to "
                           "write to standard output.")


#: ``network prune-cap-counts`` shows its progress at most this often (seconds), by this clock.
PROGRESS_EVERY_S = 1.0
clock = time.monotonic


class Command(BaseCommand):
    help = "Load (or only check) a network file, or export the network as one."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{load,export,prune-cap-counts}")
        load = actions.add_parser("load", help="Check a network file and write it in one transaction.")
        load.add_argument("file", help="the YAML network file")
        load.add_argument("--prune", action="store_true",
                          help="also remove what the file no longer mentions (targets deleted or paused; "
                               "campaigns, buyers, publishers and tracking numbers deactivated)")
        load.add_argument("--check", action="store_true", help="only check the file; write nothing")
        export = actions.add_parser("export", help="Write the network as a network file (YAML).")
        export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
        actions.add_parser("prune-cap-counts", help="Delete the cap counts of periods no cap reads any more (over "
                                                    "in every time zone 3 days ago).")

    def handle(self, *args: Any, **options: Any) -> None:
        refuse_empty_paths(options)
        if options["action"] == "prune-cap-counts":
            # It deletes: "Cannot read the network" would send the operator looking for a reading fault.
            with reading_the_database("cap counts", doing="delete"):
                self.prune_cap_counts()
            return
        with reading_the_database("the network"):  # not migrated: one line saying so, not a traceback
            if options["action"] == "load":
                self.load(options["file"], prune=options["prune"], check=options["check"])
            else:
                self.export(options.get("output"))

    def load(self, path: str, *, prune: bool, check: bool) -> None:
        try:
            report = load_network(path, prune=prune, check_only=check)
        except NetworkError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem), style_func=lambda text: text)
            count = len(exc.problems)
            self.stderr.write(f"{in_words(count, 'problem')}; nothing was written.")
            sys.exit(1)
        if check:
            self.stdout.write(f"{path} is valid ({'; '.join(report.notes)}); nothing was written (--check).")
            return
        self.stdout.write(f"Loaded {path}{' (pruned)' if prune else ''}:")
        for line in report.lines():
            self.stdout.write(f"  {line}")
        if not report.changed:
            self.stdout.write("Nothing changed.")

    def prune_cap_counts(self) -> None:
        now = dt.datetime.now(dt.UTC)
        hour, day, month = cap_counts.last_finished_periods(now)

        last_line = [clock()]

        def progress(done: int, targets: int, deleted: int) -> None:
            # On standard error (standard output holds the result), at most a line every PROGRESS_EVERY_S:
            # a quick run (a small network, little to delete) prints none.
            if done < targets and clock() - last_line[0] >= PROGRESS_EVERY_S:
                last_line[0] = clock()
                self.stderr.write(f"… {done} of {counted(targets, 'targets')}, "
                                  f"{cap_counts.counted(deleted)} deleted so far",
                                  style_func=lambda text: text)

        deleted = cap_counts.forget_finished_periods(now, progress=progress)
        if not deleted:
            # "after" the last finished key, not "from" the next one: after a fall-back's first 01:00 hour
            # comes its second time (H…01b, core.periods), kept as well.
            self.stdout.write(f"No cap count of a finished period to delete (kept: hours after {hour}, "
                              f"days after {day}, months after {month}).")
            return
        self.stdout.write(f"Deleted {cap_counts.counted(deleted)} of finished periods (hours up to {hour}, days "
                          f"up to {day}, months up to {month}, each over in every time zone 3 days ago); the counts "
                          f"a cap can still read are kept.")

    def export(self, output: str | None) -> None:
        try:
            data = export_network()
        except NetworkError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem), style_func=lambda text: text)
            count = len(exc.problems)
            self.stderr.write(f"{in_words(count, 'value')} a network file can't hold; "
                              f"nothing was exported.")
            sys.exit(1)
        text = EXPORT_HEADER + dump_network(data)
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror or exc}") from None
        sizes = {kind: len(data.get(kind, ())) for kind in KINDS}
        sizes["targets"] = sum(len(buyer["targets"]) for buyer in data["buyers"])
        counts = ", ".join(counted(n, kind) for kind, n in sizes.items())
        self.stdout.write(f"Wrote {output}: {counts}")
