"""`callbroker serve`: the production web server (gunicorn, sync workers = cores by default)."""

import os

from django.core.management.base import BaseCommand, CommandError

from callbroker.ops.server import default_workers, gunicorn_command, host_port


def port_number(text: str, setting: str = "") -> int:
    """``text`` as a TCP port; a ``CommandError`` naming ``setting`` (an environment variable) if it isn't."""
    named = f"{setting}: " if setting else ""
    try:
        port = int(text)
    except ValueError:
        raise CommandError(f"{named}{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise CommandError(f"{named}{port} is not a port number (1-65535)")
    return port


def chosen_port(given: str | None) -> int:
    """``--port`` when given, else ``CALLBROKER_PORT``, else 8000 (read only when ``--port`` is missing)."""
    if given is not None:
        return port_number(given)
    return port_number(os.environ.get("CALLBROKER_PORT", "") or "8000", "CALLBROKER_PORT")


class Command(BaseCommand):
    help = "Serve callbroker with gunicorn (production server). Workers default to the number of cores."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("CALLBROKER_HOST", "127.0.0.1"))
        parser.add_argument("--port", help="default: CALLBROKER_PORT, else 8000")
        parser.add_argument("--workers", type=int, default=default_workers())
        parser.add_argument("--access-log", action="store_true", help="Log every request to stdout.")

    def handle(self, *args, host, port, workers, access_log, **options):
        port = chosen_port(port)
        cmd = gunicorn_command(host, port, workers, access_log=access_log)
        # --settings is in the environment already (Django puts it there); --pythonpath only in this
        # process's sys.path: the server is a new program, so it goes into its environment too.
        if options.get("pythonpath"):
            paths = [options["pythonpath"], *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
            os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        self.stdout.write(f"callbroker serving on http://{host_port(host, port)} with {workers} workers")
        self.stdout.flush()
        os.execv(cmd[0], cmd)  # replace this process: signals go straight to gunicorn
