"""`callbroker run` (what `make run` does): migrate, load the demo, serve, and feed simulated calls.

The terminal shows one line per call as it finishes: its CallSid's start, the tracking number and its
campaign, the caller and ZIP, where it was routed, how long it talked, billable or why not.

Stopping (Ctrl-C, or SIGTERM): no new call starts, the calls in flight finish, then the server stops;
a second Ctrl-C stops at once. The server runs in a session of its own, so the terminal's Ctrl-C
reaches only this command. Calls a previous run left unfinished (stopped at once, or killed) are closed
when the next run starts: the emulator that was playing them is gone, so their final status can't come.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import random
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from callbroker.arguments import above_zero, at_least
from callbroker.ops.management.commands.serve import chosen_port
from callbroker.ops.server import (PortInUse, check_port_free, default_workers, host_port, start_server,
                                   stop_server)
from callbroker.words import counted


class Command(BaseCommand):
    help = "Migrate, load the demo network, start the server and feed it simulated calls (Ctrl-C stops)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", help="default: CALLBROKER_PORT, else 8000")
        parser.add_argument("--workers", type=at_least(1, int), default=default_workers())
        parser.add_argument("--rate", type=above_zero, default=0.5, help="New calls per second (default 0.5).")
        parser.add_argument("--calls", type=at_least(0, int), default=0,
                            help="Stop after this many calls (0 = until Ctrl-C).")
        parser.add_argument("--time-scale", type=at_least(0, float), default=0.02,
                            help="Real seconds per simulated second of talk/ring (default 0.02).")
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, host, port, workers, rate, calls, time_scale, seed, **options):
        from callbroker.calls.models import Call
        from callbroker.calls.presenters import call_summary_line
        from callbroker.sim.emulator import Carrier
        from callbroker.sim.traffic import generate_day, run_traffic, set_from_signal_handler

        import yaml

        port = chosen_port(port)
        try:  # before migrating and loading the demo (checked again when the server starts)
            check_port_free(host, port)
        except PortInUse as exc:
            raise CommandError(str(exc)) from None
        self.hold_the_data_directory()
        call_command("migrate", verbosity=0, interactive=False)
        call_command("demo", stdout=self.stdout)
        stopping = threading.Event()  # no new call; the calls in flight finish, then the server stops
        reader_gone = threading.Event()  # our output was piped into a reader that stopped (`run | head`)

        def say(text: str) -> None:
            """Print a line; when the reader has gone, stop as on Ctrl-C (nobody sees the calls any more)."""
            if reader_gone.is_set():
                return
            try:
                self.stdout.write(text)
                self.stdout.flush()
            except BrokenPipeError:
                reader_gone.set()
                stopping.set()

        def stop(signum, frame) -> None:
            if not stopping.is_set():
                set_from_signal_handler(stopping)
                say("\nStopping: the calls in flight finish first (Ctrl-C again to stop now) …")
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: KeyboardInterrupt

        # From here a Ctrl-C (or SIGTERM) stops the run once the server is up, never leaving it behind.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log_path = Path(settings.DATA_DIR) / "server.log"
        plural = "" if workers == 1 else "s"
        self.stdout.write(f"Starting the server ({workers} worker{plural}, log in {log_path}) …")
        try:
            # Its calls come from its own emulator under RUN_ACCOUNT_SID, signed with TWILIO_AUTH_TOKEN: an
            # account pinned in the environment (TWILIO_ACCOUNT_SID), or accounts with tokens of their own
            # (TWILIO_ACCOUNT_TOKENS), would refuse every one of them.
            server = start_server(host, port, workers, log_path=log_path, own_session=True,
                                  env={"TWILIO_ACCOUNT_SID": "", "TWILIO_ACCOUNT_TOKENS": ""})
        except RuntimeError as exc:  # the port taken, or the server exited: say so in one line
            raise CommandError(str(exc)) from None
        done = 0
        interrupted = False
        try:
            self.close_leftovers()
            base = f"http://{host_port(host, port)}"
            self.stdout.write(self.style.SUCCESS(
                f"\ncallbroker is running on {base}\n"
                f"  admin:        {base}/admin/  ({admin_login()})\n"
                f"  voice URL:    {base}/carriers/twilio/voice   fallback: {base}/carriers/twilio/fallback   "
                f"status: {base}/carriers/twilio/status\n"
                f"  auth token:   TWILIO_AUTH_TOKEN={settings.TWILIO_AUTH_TOKEN}\n"
                f"Feeding simulated calls at {rate}/s — Ctrl-C to stop.\n"))
            network = yaml.safe_load((Path(__file__).resolve().parents[3] / "network" / "demo"
                                      / "demo-network.yaml").read_text())
            carrier = Carrier(base, settings.TWILIO_AUTH_TOKEN, time_scale=time_scale, seed=seed,
                              account_sid=RUN_ACCOUNT_SID)

            def on_done(planned, record):
                nonlocal done
                done += 1
                call = Call.objects.filter(call_sid=record.call_sid).select_related(
                    "campaign", "tracking_number", "connected_target__buyer").first()
                say(call_summary_line(call) if call
                    else f"{record.call_sid}: not recorded ({record.final_status})")

            for batch in itertools.count():
                if stopping.is_set() or (calls and done >= calls):
                    break
                size = min(200, calls - done) if calls else 200
                first = (seed if seed is not None else random.randrange(1 << 30)) + batch
                planned = generate_day(network, calls=size, seed=first)
                # Evenly paced (not ``follow_day``): a planned day starts at midnight, and a newcomer would
                # watch its quiet night hours first.
                run_traffic(carrier, planned, rate=rate, concurrency=max(4, int(rate * 8)), on_done=on_done,
                            stop=stopping)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping already: a third Ctrl-C changes nothing
            say("\nStopping the server …")
            stop_server(server)  # before anything else can fail
        plural = "" if done == 1 else "s"
        if interrupted:
            # Stopped at once: the calls still in flight are left as they are (the next run closes them);
            # exiting now, rather than waiting for the emulator's threads to play them out.
            say(f"Stopped at once after {done} call{plural}; the calls in flight are closed by the next run. "
                f"The data stays in {settings.DATA_DIR}.")
            sys.stderr.flush()
            os._exit(130)
        if reader_gone.is_set():
            raise BrokenPipeError  # the command line ends quietly, as for any command piped into `head`
        say(f"{done} call{plural} simulated. The data stays in {settings.DATA_DIR}; `{own_command()} calls list` "
            "shows them.")
        return None

    def hold_the_data_directory(self) -> None:
        """One ``callbroker run`` per data directory: each closes, when it starts, the calls an earlier one
        left unfinished, which must not be a live run's. The lock goes with the process (even killed)."""
        path = Path(settings.DATA_DIR) / "run.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(path, "a+")  # noqa: SIM115 - held open (locked) for the life of the process
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise CommandError(f"another `callbroker run` uses this data directory ({settings.DATA_DIR}); stop it "
                               "first, or give this one its own (CALLBROKER_DATA_DIR)") from None
        except OSError as exc:  # a file system without locks (some network mounts)
            self._lock.close()
            raise CommandError(f"cannot lock {path} ({exc.strerror or exc}): `callbroker run` needs a data "
                               "directory on a local file system (CALLBROKER_DATA_DIR)") from None

    def close_leftovers(self) -> None:
        """Close the calls an earlier run left unfinished (their slots would stay held)."""
        from callbroker.calls.services import close_without_status, unfinished_calls_of

        sids = unfinished_calls_of(RUN_ACCOUNT_SID)
        services_log = logging.getLogger("callbroker.calls.services")
        level = services_log.level
        services_log.setLevel(logging.ERROR)  # a warning per call closed: the line below says it once
        try:
            reason = "left unfinished by an earlier `callbroker run`"
            closed = [sid for sid in sids if close_without_status(sid, reason)]
        finally:
            services_log.setLevel(level)
        if closed:
            self.stdout.write(f"Closed {counted(len(closed), 'simulated call')} an earlier run "
                              "left unfinished (their buyers' lines were still held).")


#: The AccountSid of the calls ``callbroker run`` places (``sim traffic`` and ``sim call`` use another): the
#: calls a new run may close as left unfinished by an earlier one.
RUN_ACCOUNT_SID = "AC" + "0" * 30 + "de"


#: Set by the Makefile's ``run``: the directory of the shell ``make`` was typed in (see _shell_is_here).
SHELL_DIR_ENV = "CALLBROKER_SHELL_DIR"


def own_command() -> str:
    """How to type this program in a shell: ``callbroker`` when that name on ``PATH`` is this program, else
    the path it was started by. ``make run`` starts ``.venv/bin/callbroker`` without activating the
    virtualenv, so the plain name, which the last line used to suggest, is "command not found" there. The
    path is quoted when the shell would split it (a checkout in ``~/My Projects``): unquoted, the shell ran
    ``~/My`` and said "not found"."""
    started = sys.argv[0] if sys.argv else ""
    if Path(started).name != "callbroker":  # ``python -m callbroker.cli``, or a test's ``call_command``
        return "callbroker"
    found = shutil.which("callbroker")
    if found and Path(found).resolve() == Path(started).resolve():
        return "callbroker"
    if not Path(started).is_absolute() and not _shell_is_here():
        started = os.path.abspath(started)
    return shlex.quote(started)


def _shell_is_here() -> bool:
    """Whether the user's shell is in this process's directory, where a relative path such as
    ``.venv/bin/callbroker`` works. ``make -C /some/dir run`` changes directory behind the shell's back, and
    the relative path the last line named was "not found" from the user's directory. The shell's ``PWD``
    says where it is, and make passes it on, but a recipe run through a shell (``RUN_ARGS`` with quotes)
    has it reset to here: the Makefile's ``run`` passes make's own (the shell's) as
    ``CALLBROKER_SHELL_DIR``. Not sure: an absolute path, which works from anywhere."""
    shell_dir = os.environ.get(SHELL_DIR_ENV) or os.environ.get("PWD", "")
    try:
        return bool(shell_dir) and Path(shell_dir).resolve() == Path.cwd().resolve()
    except OSError:  # the current directory removed under us
        return False


def admin_login() -> str:
    """How to sign in to the admin, as far as this process can tell."""
    from django.contrib.auth import get_user_model

    from callbroker.network.management.commands.demo import ADMIN_USERNAME, DEFAULT_ADMIN_PASSWORD, PASSWORD_ENV

    if os.environ.get(PASSWORD_ENV):
        return f"user '{ADMIN_USERNAME}', password: the value of {PASSWORD_ENV}"
    user = get_user_model().objects.filter(username=ADMIN_USERNAME).first()
    if user is not None and user.check_password(DEFAULT_ADMIN_PASSWORD):
        return f"user '{ADMIN_USERNAME}', password '{DEFAULT_ADMIN_PASSWORD}'"
    return f"user '{ADMIN_USERNAME}', the password you gave it (set a new one with {PASSWORD_ENV})"
