"""The one command line for every operator task: ``callbroker <command>``.

Django's management commands (``migrate``, ``createsuperuser`` …) and ours (``demo``, ``serve``,
``network``, ``calls``, ``bench``, ``run``) go through Django; ``sim`` (the carrier emulator) needs no
database and runs without it, so it can drive any server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class DataDirError(Exception):
    """``CALLBROKER_DATA_DIR`` can't be made a directory (a file there, no permission …)."""


def _prepare_environment() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbroker.settings")
    given = os.environ.get("CALLBROKER_DATA_DIR", "var")
    static = Path(given) / "static"
    try:
        static.mkdir(parents=True, exist_ok=True)  # SQLite file, spool, collected static files
    except OSError as exc:  # e.g. a file of that name: one line, as for the other settings, not a traceback
        raise DataDirError(f"CALLBROKER_DATA_DIR={given!r}: cannot create the directory "
                           f"{exc.filename or static} ({exc.strerror or exc})") from None


def _sim_parser():
    import argparse

    from callbroker.sim import cli as sim_cli

    parser = argparse.ArgumentParser(prog="callbroker sim", description="Carrier emulator and traffic.")
    sim_cli.add_arguments(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _run(argv)
        # What is still buffered is written now, while a reader that went away can still be told apart
        # (exit code 141 below): at exit, Python would print "Exception ignored … BrokenPipeError" and
        # exit with 120.
        sys.stdout.flush()
        return code
    except SystemExit:  # an error already printed (Django's CommandError, argparse): its exit code stays
        _flush_quietly()
        raise
    except KeyboardInterrupt:  # Ctrl-C: what was being written is rolled back with its transaction
        _flush_quietly()
        print("\ncallbroker: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`callbroker calls list | head`): stop quietly
        _stdout_to_devnull()
        return 141  # as if killed by SIGPIPE, as other programs in a pipeline end


def _stdout_to_devnull() -> None:
    """Python flushes stdout again at exit, into the closed pipe: point it at /dev/null first (the signal
    module's documentation does the same)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
    except (OSError, ValueError):  # stdout closed or unusable: nothing more to say there
        pass


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "sim":
        from callbroker.sim import cli as sim_cli

        return sim_cli.run(_sim_parser().parse_args(argv[1:]))
    if argv == ["help", "sim"]:
        _sim_parser().print_help()
        return 0
    try:
        _prepare_environment()
    except DataDirError as exc:
        print(f"callbroker: {exc}", file=sys.stderr)
        return 2
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(["callbroker", *argv] if argv else ["callbroker", "help"])
    except ImproperlyConfigured as exc:  # a setting's value: one line naming it, not a traceback
        print(f"callbroker: {exc}", file=sys.stderr)
        return 2
    if argv in ([], ["help"], ["--help"], ["-h"]):  # sim runs without Django: Django's list doesn't know it
        sys.stdout.write("\n[sim: the carrier emulator, no database needed; callbroker help sim]\n    sim\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
