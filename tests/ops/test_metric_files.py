"""``ops/metric_files.py``: where a server's metric files go, and metrics that never fail a webhook.

The whole story on a real full disk (a served webhook answered, no worker killed) is
``tests/reliability/test_full_data_disk.py``; here the pieces, on a stand-in for ``/dev/shm``.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys

from callbroker.ops import metric_files


def test_a_server_gets_a_directory_of_its_own_in_shared_memory(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    first = metric_files.directory(tmp_path / "data", shared_memory=shm)
    assert first.parent == shm
    assert first.name.startswith(metric_files.PREFIX)
    assert (first / metric_files.OWNER_FILE).read_text() == f"{os.getpid()}\n"
    assert first.stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "data").exists()  # nothing on the data disk


def test_a_directory_the_environment_names_is_kept_and_emptied_of_the_last_run(tmp_path):
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old")
    (given / "notes.txt").write_text("the operator's")
    assert metric_files.directory(tmp_path / "data", str(given), shared_memory=tmp_path) == given
    assert [p.name for p in given.iterdir()] == ["notes.txt"]
    metric_files.remove(given)  # at exit: not ours to remove
    assert given.is_dir()


def test_without_shared_memory_the_data_directory_as_before(tmp_path):
    assert metric_files.directory(tmp_path / "data", shared_memory=tmp_path / "no-shm") == \
        tmp_path / "data" / "prometheus"
    assert (tmp_path / "data" / "prometheus").is_dir()


def test_directories_of_servers_gone_are_removed_at_the_next_start(tmp_path):
    """A server killed outright (SIGKILL, OOM) runs no ``on_exit``: its directory would stay in RAM."""
    def made_by(pid: int):
        path = metric_files.directory(tmp_path, shared_memory=tmp_path)
        (path / metric_files.OWNER_FILE).write_text(f"{pid}\n")
        return path

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = made_by(gone.pid)
    alive = made_by(os.getppid())  # another server, still running
    previous_me = made_by(os.getpid())  # a container's server is process 1 at every start
    mine = metric_files.directory(tmp_path, shared_memory=tmp_path)
    assert not dead.exists() and not previous_me.exists()
    assert alive.is_dir() and mine.is_dir()
    metric_files.remove(mine)
    assert not mine.exists()


def test_a_file_is_allocated_before_it_is_mapped(tmp_path):
    """The file prometheus_client makes is sparse (``truncate``): here every block of it is on the disk,
    so that writing through the map can't meet a full disk (SIGBUS)."""
    script = f"""
import os
os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
from callbroker.ops import metric_files
metric_files.install()
from prometheus_client import Counter
counter = Counter("calls_seen", "test", ["endpoint"])
for n in range(2000):  # keys enough to grow the file past its first 64 KiB
    counter.labels(endpoint=f"endpoint-{{n}}").inc()
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    (written,) = tmp_path.glob("counter_*.db")
    size = written.stat().st_size
    assert size > 64 * 1024
    assert written.stat().st_blocks * 512 >= size  # no hole left


class Refusing:
    """A metric value whose file the disk refuses, until ``room`` is set."""

    room = False

    def __init__(self, *args, **kwargs) -> None:
        self.value = 0.0
        if not Refusing.room:
            raise OSError(errno.ENOSPC, "No space left on device")

    def inc(self, amount) -> None:
        if not Refusing.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.value += amount

    def get(self):
        return self.value


def test_a_value_whose_file_is_refused_fails_no_one_and_counts_again_once_there_is_room(caplog, monkeypatch):
    monkeypatch.setattr(Refusing, "room", False)
    value_class = metric_files._never_failing(Refusing)
    with caplog.at_level(logging.WARNING, logger="callbroker.ops.metrics"):
        value = value_class("counter", "calls", "calls_total", (), (), "help")
        for _ in range(100):
            value.inc(1)  # raises nothing
        assert value.get() == 0.0
        Refusing.room = True
        value.inc(1)
    assert value.get() == 1.0
    said = [r for r in caplog.records if r.name == "callbroker.ops.metrics"]
    assert len(said) == 2, [r.getMessage() for r in said]  # the first refusal, then that it works again
    assert "No space left on device" in said[0].getMessage() and said[0].exc_info
    assert "works again, after 102 failures" in said[1].getMessage()
