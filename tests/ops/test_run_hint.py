"""The last line of ``callbroker run`` names the command to list the calls as the user's shell can type it:
``make run`` starts ``.venv/bin/callbroker`` without activating the virtualenv, and the line said
``callbroker calls list``, "command not found" in that shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from callbroker.ops.management.commands.run import own_command


@pytest.fixture
def venv_program(tmp_path):
    """A ``callbroker`` program in a virtualenv's ``bin`` that is not on ``PATH``."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    program = bin_dir / "callbroker"
    program.write_text(f"#!{sys.executable}\nprint('called')\n")
    program.chmod(0o755)
    return program


@pytest.fixture(autouse=True)
def not_under_make(monkeypatch):
    """Not started by the Makefile's ``run``, which says where make was typed."""
    monkeypatch.delenv("CALLBROKER_SHELL_DIR", raising=False)


def in_directory(monkeypatch, directory, shell_dir=None):
    """The process in ``directory``, started from a shell in ``shell_dir`` (the same by default)."""
    monkeypatch.chdir(directory)
    monkeypatch.setenv("PWD", str(shell_dir or directory))


def test_a_program_not_on_path_is_named_as_it_was_started(monkeypatch, tmp_path, venv_program):
    in_directory(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [".venv/bin/callbroker", "run"])  # as the Makefile's recipe starts it
    command = own_command()
    assert command == ".venv/bin/callbroker"
    typed = subprocess.run(f"{command} calls list", shell=True, capture_output=True, text=True, check=False,
                           env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert typed.stdout == "called\n"  # the shell finds it as the line writes it

    monkeypatch.setattr(sys, "argv", [str(venv_program), "run"])
    assert own_command() == str(venv_program)


@pytest.mark.parametrize("recipe_shell", [False, True])
def test_make_started_in_another_directory_gives_a_path_that_works_from_the_users(monkeypatch, tmp_path,
                                                                                  venv_program, recipe_shell):
    """``make -C /some/dir run`` from the user's directory: make runs ``.venv/bin/callbroker`` in /some/dir,
    and the line named that relative path, "not found" from the directory the user typed in. make passes on
    the shell's ``PWD``; a recipe run through a shell (``RUN_ARGS`` with quotes) has it reset to /some/dir,
    and the Makefile's ``CALLBROKER_SHELL_DIR`` says where make was typed."""
    users = tmp_path / "elsewhere"
    users.mkdir()
    in_directory(monkeypatch, tmp_path, shell_dir=tmp_path if recipe_shell else users)
    if recipe_shell:
        monkeypatch.setenv("CALLBROKER_SHELL_DIR", str(users))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [".venv/bin/callbroker", "run"])  # as the Makefile's recipe starts it
    typed = subprocess.run(f"{own_command()} calls list", shell=True, capture_output=True, text=True,
                           check=False, cwd=users, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert typed.stdout == "called\n", typed.stderr


def test_plain_make_run_in_the_project_keeps_the_short_path(monkeypatch, tmp_path, venv_program):
    in_directory(monkeypatch, tmp_path)
    monkeypatch.setenv("CALLBROKER_SHELL_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [".venv/bin/callbroker", "run"])
    assert own_command() == ".venv/bin/callbroker"


def test_a_path_the_shell_would_split_is_quoted(monkeypatch, tmp_path):
    """A checkout in a folder whose name holds a space: the line named ``/…/My Projects/.venv/bin/callbroker``
    unquoted, and the shell ran ``/…/My`` ("not found")."""
    bin_dir = tmp_path / "My Projects" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    program = bin_dir / "callbroker"
    program.write_text(f"#!{sys.executable}\nimport sys\nprint(sys.argv[1:])\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(program), "run"])
    typed = subprocess.run(f"{own_command()} calls list", shell=True, capture_output=True, text=True, check=False,
                           env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert typed.stdout == "['calls', 'list']\n", typed.stderr


def test_the_plain_name_when_path_finds_this_program(monkeypatch, tmp_path, venv_program):
    in_directory(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", f"{venv_program.parent}{os.pathsep}/usr/bin:/bin")  # the virtualenv activated
    monkeypatch.setattr(sys, "argv", [".venv/bin/callbroker", "run"])
    assert own_command() == "callbroker"


def test_another_callbroker_on_path_is_not_taken_for_this_one(monkeypatch, tmp_path, venv_program):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "callbroker").write_text("#!/bin/sh\n")
    (other / "callbroker").chmod(0o755)
    in_directory(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(venv_program), "run"])
    assert own_command() == str(venv_program)


def test_started_as_a_module_it_is_the_documented_name(monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(Path("src/callbroker/cli.py")), "run"])
    assert own_command() == "callbroker"
