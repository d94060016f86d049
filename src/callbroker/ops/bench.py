"""`callbroker bench`: the figures we promise, measured on this machine.

(a) core routing decisions per second and latency; (b) end to end: the carrier emulator driving the
real server (started as `make run` starts it, in production mode) through full call lifecycles;
(c) the signed inbound webhook alone under `wrk`, beside a hello-world view on the same server.
Each part runs against its own fresh SQLite database in a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from callbroker.ops.server import default_workers, start_server, stop_server

TOKEN = "bench-auth-token"
DEMO = Path(__file__).resolve().parents[1] / "network" / "demo" / "demo-network.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class MemorySampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree (gunicorn master + workers) until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self._halt = threading.Event()

    def _tree(self) -> list[int]:
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            parent = frontier.pop()
            try:
                children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                pids.append(child)
                frontier.append(child)
        return pids

    @staticmethod
    def _kb(path: str, field: str) -> int:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self) -> None:
        pids = self._tree()
        rss = sum(self._kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
        pss = sum(self._kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class BenchServer:
    """A production-mode server on a fresh database with the demo network loaded."""

    def __init__(self, workers: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="callbroker-bench-"))
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CALLBROKER_DATA_DIR": str(self.dir),
            "CALLBROKER_ENV": "production",
            "CALLBROKER_SECRET_KEY": uuid.uuid4().hex,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "CALLBROKER_LOG_LEVEL": "ERROR",
        }
        self.env.pop("DATABASE_URL", None)
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BenchServer:
        cli = [sys.executable, "-m", "callbroker.cli"]
        subprocess.run([*cli, "migrate", "--verbosity", "0"], env=self.env, check=True)
        subprocess.run([*cli, "network", "load", str(DEMO)], env=self.env, check=True, stdout=subprocess.DEVNULL)
        self.proc = start_server("127.0.0.1", self.port, self.workers, env=self.env, log_path=self.dir / "server.log")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            stop_server(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_core_part(decisions: int) -> dict:
    from callbroker.core.bench import bench_core

    return bench_core(n_targets=1000, zips_per_area=2000, decisions=decisions, seed=1)


def bench_end_to_end(workers: int, calls: int, concurrency: int) -> dict:
    import yaml

    from callbroker.sim.emulator import Carrier
    from callbroker.sim.traffic import generate_day, run_traffic

    network = yaml.safe_load(DEMO.read_text())
    with BenchServer(workers) as srv:
        sampler = MemorySampler(srv.proc.pid)
        sampler.sample()
        idle_rss = sampler.peak_rss
        sampler.start()
        planned = generate_day(network, calls=calls, seed=11)
        carrier = Carrier(srv.base, TOKEN, seed=11, time_scale=0.0)
        stats = run_traffic(carrier, planned, rate=None, concurrency=concurrency)
        sampler.stop()
        latencies = list(stats.latencies_ms)
        return {
            "workers": workers,
            "calls": stats.calls,
            "errors": stats.errors,
            "webhooks": len(latencies),
            "wall_s": round(stats.wall_seconds, 2),
            "lifecycles_per_s": round(stats.calls / stats.wall_seconds, 1) if stats.wall_seconds else 0,
            "webhook_p50_ms": round(_pct(latencies, 0.50), 2),
            "webhook_p99_ms": round(_pct(latencies, 0.99), 2),
            "server_rss_idle_mb": round(idle_rss / 1024, 1),
            "server_rss_peak_mb": round(sampler.peak_rss / 1024, 1),
            "server_pss_peak_mb": round(sampler.peak_pss / 1024, 1),
        }


WRK_SCRIPT = r"""
local bodies, sigs, counter, first, stride = {}, {}, 0, 0, 1
local thread_id = 0
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
function init(args)
  local path, threads = args[1], tonumber(args[2])
  local i = 0
  for line in io.lines(path) do
    if i % threads == tid then
      local tab = line:find("\t")
      sigs[#sigs + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    i = i + 1
  end
end
function request()
  counter = counter + 1
  if counter > #bodies then counter = 1 end
  return wrk.format("POST", PATH, {["Content-Type"] = "application/x-www-form-urlencoded",
                                   ["X-Twilio-Signature"] = sigs[counter]}, bodies[counter])
end
"""


def _wrk(url: str, seconds: int, connections: int, threads: int, script: Path | None = None,
         args: list[str] | None = None) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    result = {"raw": out}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            result["p50"] = parts[1]
        elif parts[:1] == ["99%"]:
            result["p99"] = parts[1]
        elif "Non-2xx" in line:
            result["non_2xx"] = int(parts[-1])
    return result


def bench_wrk(workers: int, seconds: int, connections: int) -> dict:
    if not shutil.which("wrk"):
        return {"skipped": "wrk is not installed (Debian package 'wrk'; .ci/run installs it)"}
    with BenchServer(workers) as srv:
        url = srv.base + "/carriers/twilio/voice"
        validator = RequestValidator(TOKEN)
        numbers = _tracking_numbers()
        lines_path = srv.dir / "requests.tsv"
        count = 3000 * seconds  # more than the server can take in the time: every CallSid is new
        with lines_path.open("w") as fh:
            for i in range(count):
                params = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "b" * 32,
                          "From": f"+1512{2000000 + i:07d}", "To": numbers[i % len(numbers)],
                          "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
                          "FromZip": "78701", "StirVerstat": "TN-Validation-Passed-A"}
                fh.write(f"{validator.compute_signature(url, params)}\t{urlencode(params)}\n")
        script = srv.dir / "inbound.lua"
        script.write_text(f'PATH = "/carriers/twilio/voice"\n{WRK_SCRIPT}')
        threads = 2
        _wrk(srv.base + "/bench/hello", 2, connections, threads)  # warm up
        hello = _wrk(srv.base + "/bench/hello", seconds, connections, threads)
        inbound = _wrk(url, seconds, connections, threads, script, [str(lines_path), str(threads)])
    ratio = inbound.get("rps", 0) / hello["rps"] if hello.get("rps") else 0
    return {"hello_rps": hello.get("rps"), "hello_p99": hello.get("p99"), "inbound_rps": inbound.get("rps"),
            "inbound_p50": inbound.get("p50"), "inbound_p99": inbound.get("p99"),
            "inbound_non_2xx": inbound.get("non_2xx", 0), "ratio": round(ratio, 3),
            "seconds": seconds, "connections": connections, "workers": workers}


def _tracking_numbers() -> list[str]:
    import yaml

    data = yaml.safe_load(DEMO.read_text())
    return [t["number"] for t in data["tracking_numbers"]]


def run(parts: set[str], *, workers: int | None = None, calls: int = 2000, concurrency: int = 16,
        decisions: int = 20000, seconds: int = 10, connections: int = 32, out=sys.stdout) -> dict:
    workers = workers or default_workers()
    results: dict = {"machine": _machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say(f"callbroker bench on {results['machine']}")
    if "core" in parts:
        say(f"(a) core routing: 1,000 targets, areas up to 2,000 ZIPs, {decisions:,} decisions …")
        core = results["core"] = bench_core_part(decisions)
        say(f"    {core['per_second']:,.0f} decisions/s   p50 {core['p50_us']:.1f} µs   p99 {core['p99_us']:.1f} µs"
            f"   (target p99 ≤ 200 µs)")
    if "e2e" in parts:
        say(f"(b) end to end: {calls:,} calls through the emulator, {concurrency} concurrent, {workers} workers …")
        e2e = results["e2e"] = bench_end_to_end(workers, calls, concurrency)
        say(f"    {e2e['lifecycles_per_s']} call lifecycles/s ({e2e['webhooks']:,} webhooks, {e2e['errors']} errors)"
            f"   webhook p50 {e2e['webhook_p50_ms']} ms   p99 {e2e['webhook_p99_ms']} ms"
            f"   (targets ≥ 200/s, p99 ≤ 25 ms)")
        say(f"    server memory: RSS peak {e2e['server_rss_peak_mb']} MB (idle {e2e['server_rss_idle_mb']} MB),"
            f" PSS peak {e2e['server_pss_peak_mb']} MB   (target ≤ 250 MB)")
    if "wrk" in parts:
        say(f"(c) wrk: signed inbound webhook vs hello world, {seconds} s each, {connections} connections …")
        w = results["wrk"] = bench_wrk(workers, seconds, connections)
        if "skipped" in w:
            say(f"    skipped: {w['skipped']}")
        else:
            say(f"    hello world {w['hello_rps']:,.0f} req/s (p99 {w['hello_p99']})   inbound webhook "
                f"{w['inbound_rps']:,.0f} req/s (p50 {w['inbound_p50']}, p99 {w['inbound_p99']}, "
                f"non-2xx {w['inbound_non_2xx']})   ratio {w['ratio']}   (target ≥ 0.4)")
    return results


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model or 'unknown CPU'}, Python {sys.version.split()[0]}"


def main_json(results: dict) -> str:
    return json.dumps({k: v for k, v in results.items()}, indent=2, default=str)



