"""Health, metrics and structured logs on the real server (gunicorn, 2 workers) as ``callbroker serve`` runs it.

The server keeps its live counters in the private Redis and logs JSON lines; the emulator places calls
through it. Readiness follows Redis going away and coming back; metrics add up over both workers
(prometheus_client multiprocess mode) and survive a worker's death; every log line of a webhook
carries the call's SID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

from callbroker.ops import metric_files
from callbroker.ops.server import start_server, stop_server
from callbroker.sim.emulator import BuyerBehaviour, Carrier
from tests.services import free_port

TOKEN = "production-test-token"
NETWORK = Path(__file__).resolve().parents[1] / "e2e" / "network.yaml"
PLUMBING, UNKNOWN_NUMBER = "+15125550001", "+15125550000"
PIPES_A, PIPES_B = "+15125550101", "+15125550102"


class Server:
    def __init__(self, base_url: str, data_dir: Path, proc: subprocess.Popen) -> None:
        self.base_url, self.data_dir, self.proc = base_url, data_dir, proc
        self.log_path = data_dir / "server.log"
        self.sent = 0  # carrier webhooks sent to it (the metrics must add up to this)

    def post(self, path: str, params: dict[str, str], *, token: str = TOKEN) -> httpx.Response:
        url = self.base_url + path
        signature = RequestValidator(token).compute_signature(url, params)
        self.sent += 1
        return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)

    def place(self, carrier: Carrier, *args, **kwargs):
        record = carrier.place_call(*args, **kwargs)
        self.sent += len(record.requests)
        return record

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def metrics(self) -> dict[str, float]:
        response = httpx.get(self.base_url + "/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return parse_metrics(response.text)


def parse_metrics(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of every sample in the text format."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items()
               if (k == name or k.startswith(name + "{")) and all(w in k for w in wanted))


def migrate_and_load(env: dict[str, str], network: Path) -> None:
    """``callbroker migrate`` and ``callbroker network load`` in one process (one Django start, not two)."""
    script = ("import django; django.setup(); from django.core.management import call_command; "
              f"call_command('migrate', verbosity=0); call_command('network', 'load', {str(network)!r})")
    subprocess.run([sys.executable, "-c", script], env={**env, "DJANGO_SETTINGS_MODULE": "callbroker.settings"},
                   check=True, capture_output=True, timeout=120)


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"CALLBROKER_DATA_DIR": str(data_dir), "TWILIO_AUTH_TOKEN": TOKEN, "CALLBROKER_LOG_LEVEL": "INFO",
                "CALLBROKER_LOG_FORMAT": "json", "CALLBROKER_NODE": "node-a", "CALLBROKER_METRICS_DB_CACHE_S": "0",
                **extra})
    return env


@pytest.fixture(scope="module")
def server(redis_server, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("observed")
    env = server_env(data_dir, REDIS_URL=redis_server.url, CALLBROKER_REDIS_PREFIX=f"obs-{uuid.uuid4().hex[:6]}:")
    migrate_and_load(env, NETWORK)
    port = free_port()
    proc = start_server("127.0.0.1", port, 2, env=env, log_path=data_dir / "server.log")
    try:
        yield Server(f"http://127.0.0.1:{port}", data_dir, proc)
    finally:
        stop_server(proc)


@pytest.fixture()
def carrier(server):
    with Carrier(server.base_url, TOKEN, seed=3) as c:
        yield c


def test_calls_go_through_with_the_counters_in_redis(server, carrier):
    record = server.place(carrier, PLUMBING, "+15124441001", params={"FromZip": "78701"},
                          buyers={PIPES_A: BuyerBehaviour(answers=False, ring_seconds=40),
                                  PIPES_B: BuyerBehaviour(talk_seconds=100)})
    assert [d.number for d in record.dials] == [PIPES_A, PIPES_B], record.transcript()
    assert record.bridged and record.ok
    assert server.metrics()['callbroker_counters_backend{backend="redis"}'] == 1


def test_metrics_add_up_over_both_workers_and_survive_a_dead_worker(server, carrier):
    for n in range(3):
        server.place(carrier, PLUMBING, f"+1512444200{n}", params={"FromZip": "78701"},
                     buyers={PIPES_A: BuyerBehaviour(talk_seconds=90)})
    assert server.post("/carriers/twilio/dial?seq=1", {"CallSid": "CA-never-seen", "DialCallStatus": "no-answer"}
                       ).status_code == 200  # an unknown call: answered with the safe fallback
    assert server.post("/carriers/twilio/voice", {"CallSid": "CA" + "9" * 32, "To": PLUMBING},
                       token="forged").status_code == 403
    for _ in range(4):  # whichever worker answers the scrape, it reports both workers' counts
        samples = server.metrics()
        assert total(samples, "callbroker_webhook_responses_total") == server.sent
        assert total(samples, "callbroker_webhook_duration_seconds_count") == server.sent
    for name in ("callbroker_webhook_duration_seconds_bucket", "callbroker_webhook_responses_total",
                 "callbroker_routing_failures_total", "callbroker_counter_backend_errors_total",
                 "callbroker_calls_total", "callbroker_calls_pending", "callbroker_spool_depth",
                 "callbroker_database_up"):
        assert any(k == name or k.startswith(name + "{") for k in samples), name
    assert total(samples, "callbroker_webhook_responses_total", endpoint="twilio-voice", status="403") == 1
    assert total(samples, "callbroker_routing_failures_total", endpoint="twilio-dial") == 1
    assert total(samples, "callbroker_calls_total", verdict="billable") >= 3
    assert samples["callbroker_database_up"] == 1 and samples["callbroker_spool_depth"] == 0
    assert total(samples, "callbroker_counter_backend_errors_total") == 0
    # The files are in a directory of the server's own on /dev/shm (ops/metric_files.py), not on the data disk
    # (a previous run's files left in a directory named by PROMETHEUS_MULTIPROC_DIR: test_metric_files.py).
    owners = metric_files.SHARED_MEMORY.glob(f"{metric_files.PREFIX}*/{metric_files.OWNER_FILE}")
    [metrics_dir] = [owner.parent for owner in owners if owner.read_text().strip() == str(server.proc.pid)]
    assert not (server.data_dir / "prometheus").exists()
    files = {p.name for p in metrics_dir.glob("*.db")}
    writers = {int(re.search(r"_(\d+)\.db$", f).group(1)) for f in files}  # one set of files per process
    assert writers and writers <= {server.proc.pid, *server.workers()}

    victim = server.workers()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (victim in server.workers() or len(server.workers()) < 2):
        time.sleep(0.1)
    assert victim not in server.workers() and len(server.workers()) == 2
    assert total(server.metrics(), "callbroker_webhook_responses_total") == server.sent  # nothing lost


def test_every_log_line_of_a_webhook_carries_the_call_sid(server, carrier):
    unknown, forged, orphan = ("CA" + uuid.uuid4().hex for _ in range(3))
    assert server.post("/carriers/twilio/voice", {"CallSid": unknown, "To": UNKNOWN_NUMBER, "From": "+15124443000",
                                                  "AccountSid": "AC" + "0" * 32}).status_code == 200
    assert server.post("/carriers/twilio/voice", {"CallSid": forged, "To": PLUMBING}, token="forged").status_code == 403
    assert server.post("/carriers/twilio/dial?seq=1", {"CallSid": orphan, "DialCallStatus": "busy"}).status_code == 200
    record = server.place(carrier, PLUMBING, "+15124443001", params={"FromZip": "78701"},
                          buyers={PIPES_A: BuyerBehaviour(declines_whisper=True),
                                  PIPES_B: BuyerBehaviour(talk_seconds=10)})
    time.sleep(0.3)  # let the workers' stderr reach the file
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # one JSON object per line, every line
    assert all({"time", "level", "logger", "message", "call_sid", "node", "path"} <= e.keys() for e in entries)
    during_webhooks = [e for e in entries if e["path"].startswith("/carriers/")]
    assert during_webhooks and all(e["call_sid"] for e in during_webhooks)
    by_sid = {sid: [e for e in during_webhooks if e["call_sid"] == sid] for sid in (unknown, forged, orphan)}
    assert any("not an active tracking number" in e["message"] for e in by_sid[unknown])
    assert any("invalid signature" in e["message"] for e in by_sid[forged])
    assert by_sid[orphan] and all(e["path"] == "/carriers/twilio/dial" for e in by_sid[orphan])
    assert all(e["node"] == "node-a" for e in entries if e["logger"].startswith("callbroker"))
    assert record.call_sid  # its lines, if any, carry its SID like the others (checked above)


def test_readyz_follows_redis(server, redis_server):
    ready = httpx.get(server.base_url + "/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["checks"].keys() == {"database", "redis"}
    assert ready.json()["status"] == "ok"
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
    redis_server.stop()
    try:
        for _ in range(2):  # both workers, whichever answers
            down = httpx.get(server.base_url + "/readyz", timeout=10)
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "fail"
            assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
            assert body["checks"]["database"]["ok"] is True
        assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200  # liveness: still alive
    finally:
        redis_server.start()
    deadline = time.monotonic() + 10
    while (up := httpx.get(server.base_url + "/readyz", timeout=10)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert up.status_code == 200 and up.json()["checks"]["redis"]["ok"] is True
