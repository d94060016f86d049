"""`callbroker serve`: the production web server (gunicorn, sync workers = cores by default)."""

import os

from django.core.management.base import BaseCommand

from callbroker.ops.server import default_workers, gunicorn_command


class Command(BaseCommand):
    help = "Serve callbroker with gunicorn (production server). Workers default to the number of cores."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("CALLBROKER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("CALLBROKER_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=default_workers())
        parser.add_argument("--access-log", action="store_true", help="Log every request to stdout.")

    def handle(self, *args, host, port, workers, access_log, **options):
        cmd = gunicorn_command(host, port, workers, access_log=access_log)
        self.stdout.write(f"callbroker serving on http://{host}:{port} with {workers} workers")
        self.stdout.flush()
        os.execv(cmd[0], cmd)  # replace this process: signals go straight to gunicorn
