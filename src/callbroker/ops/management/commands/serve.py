"""`callbroker serve`: the production web server (gunicorn, sync workers = cores by default).

The listening socket is opened here, before gunicorn starts, and handed to it (``--bind fd://N``): a port
something else listens on, or a host that can't be resolved, is refused in one line (as ``callbroker run``
refuses them), and the line saying where the server listens is printed only once it does. A data
directory the server can't write in (read-only) is refused before that, in one line naming
``CALLBROKER_DATA_DIR``. Connections
that come while gunicorn loads the application wait in the socket's backlog.
"""

import os
import socket

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from callbroker.arguments import at_least
from callbroker.ops.apps import START_WARNINGS_SAID
from callbroker.ops.server import (DataDirNotWritable, PortInUse, check_data_dir_writable, check_port_free,
                                   default_workers, gunicorn_command, host_port)


def port_number(text: str, setting: str = "") -> int:
    """``text`` as a TCP port; a ``CommandError`` naming ``setting`` (the option or environment variable it
    came from) if it isn't."""
    named = f"{setting}: " if setting else ""
    try:
        port = int(text)
    except ValueError:
        raise CommandError(f"{named}{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise CommandError(f"{named}{port} is not a port number (1-65535)")
    return port


def chosen_port(given: str | None) -> int:
    """``--port`` when given, else ``CALLBROKER_PORT``, else 8000 (read only when ``--port`` is missing). The
    refusal names where the port came from: ``'abc' is not a port number`` alone left the user to guess
    between the option and the variable."""
    if given is not None:
        return port_number(given, "--port")
    return port_number(os.environ.get("CALLBROKER_PORT", "") or "8000", "CALLBROKER_PORT")


class Command(BaseCommand):
    help = "Serve callbroker with gunicorn (production server). Workers default to the number of cores."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("CALLBROKER_HOST", "127.0.0.1"))
        parser.add_argument("--port", help="default: CALLBROKER_PORT, else 8000")
        parser.add_argument("--workers", type=at_least(1, int), default=default_workers(),
                            help="default: one per core this process may use")
        parser.add_argument("--access-log", action="store_true", help="Log every request to stdout.")

    def handle(self, *args, host, port, workers, access_log, **options):
        port = chosen_port(port)
        try:
            check_data_dir_writable(os.environ.get("CALLBROKER_DATA_DIR", "var"))
        except DataDirNotWritable as exc:  # a setting's value: ``callbroker: …`` in one line, exit code 2
            raise ImproperlyConfigured(str(exc)) from None
        cmd = listening(gunicorn_command(host, port, workers, access_log=access_log), host, port)
        # --settings is in the environment already (Django puts it there); --pythonpath only in this
        # process's sys.path: the server is a new program, so it goes into its environment too.
        if options.get("pythonpath"):
            paths = [options["pythonpath"], *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
            os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        plural = "" if workers == 1 else "s"
        self.stdout.write(f"callbroker listening on http://{host_port(host, port)}; starting {workers} "
                          f"worker{plural}")
        self.stdout.flush()
        if settings.START_WARNINGS:
            os.environ[START_WARNINGS_SAID] = "1"  # said by this process: gunicorn sets Django up again
        os.execv(cmd[0], cmd)  # replace this process: signals go straight to gunicorn


def listening(cmd: list[str], host: str, port: int) -> list[str]:
    """``cmd`` (``gunicorn_command``) with its ``--bind`` replaced by a socket listening on ``host:port`` now
    (bound as gunicorn binds, ``SO_REUSEADDR``; with the command's ``--backlog``, which gunicorn can't apply
    to a socket it is handed) that the server, started by ``exec``, inherits. A ``CommandError`` in one
    line when the port is taken or the host can't be resolved or listened on (formerly gunicorn retried its
    bind for seconds and gave up, after ``serve`` had said it was serving)."""
    try:
        check_port_free(host, port)  # the message `callbroker run` gives
    except PortInUse as exc:
        raise CommandError(str(exc)) from None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as listener:
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host.strip("[]"), port))
            listener.listen(int(cmd[cmd.index("--backlog") + 1]))
        except OSError as exc:  # taken between the check and now
            raise CommandError(f"cannot listen on {host_port(host, port)}: {exc.strerror or exc} "
                               "(--host, --port)") from None
        listener.set_inheritable(True)
        fd = listener.detach()  # open until exec, and in the server after it
    at = cmd.index("--bind") + 1
    return [*cmd[:at], f"fd://{fd}", *cmd[at + 1:]]
