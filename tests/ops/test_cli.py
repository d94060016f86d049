"""``callbroker`` itself (callbroker/cli.py): the help lists ``sim`` however it is asked for, a data
directory that can't be made is one line, and output into a reader that went away ends with 141."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CALLBROKER = [sys.executable, "-m", "callbroker.cli"]
REPO = Path(__file__).resolve().parents[2]


def callbroker(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var"), **env}
    environment.pop("DATABASE_URL", None)
    return subprocess.run([*CALLBROKER, *argv], env=environment, capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO)


@pytest.mark.parametrize("argv", [[], ["help"], ["--help"], ["-h"]])
def test_every_way_of_asking_for_help_lists_sim(tmp_path, argv):
    """``--help`` and ``-h`` printed Django's list alone: ``sim`` runs without Django, so it isn't there."""
    result = callbroker(tmp_path, *argv)
    assert result.returncode == 0, result.stderr
    assert "[sim: the carrier emulator" in result.stdout and result.stdout.rstrip().endswith("sim")
    assert "serve" in result.stdout  # Django's list is still there


@pytest.mark.parametrize("argv", [["--help"], ["calls", "list"], ["run"]])
def test_a_data_directory_that_is_a_file_is_one_line(tmp_path, argv):
    """Formerly a ``NotADirectoryError`` traceback from the ``mkdir`` before any command ran."""
    a_file = tmp_path / "x"
    a_file.write_text("")
    result = callbroker(tmp_path, *argv, CALLBROKER_DATA_DIR=str(a_file))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"callbroker: CALLBROKER_DATA_DIR={str(a_file)!r}: cannot create the directory {a_file / 'static'} "
        "(Not a directory)"]


def closed_pipe(tmp_path: Path, *argv: str) -> tuple[int, str]:
    """``callbroker ARGV`` with its stdout a pipe whose reader has gone (as ``| head`` leaves it), with
    Python's usual buffered stdout (PYTHONUNBUFFERED unset): its exit code and stderr."""
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path / "var")}
    env.pop("PYTHONUNBUFFERED", None)
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([*CALLBROKER, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


@pytest.fixture
def migrated(tmp_path):
    result = callbroker(tmp_path, "migrate", "--verbosity", "0")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("argv", [["calls", "list"], ["calls", "list", "--json", "--limit", "0"], ["help"]])
def test_output_into_a_reader_that_went_away_ends_quietly_with_141(tmp_path, migrated, argv):
    """Output smaller than stdout's buffer was written at exit, into the closed pipe: Python's
    "Exception ignored … BrokenPipeError" and exit code 120. Now flushed before exiting."""
    code, err = closed_pipe(tmp_path, *argv)
    assert (code, err) == (141, "")


def test_an_error_into_a_reader_that_went_away_keeps_its_exit_code(tmp_path, migrated):
    """A command that fails (exit code 1, its line on stderr) with buffered output still says so."""
    code, err = closed_pipe(tmp_path, "calls", "show", "CAnosuchcall")
    assert code == 1 and "No call with CallSid" in err and "Exception ignored" not in err
