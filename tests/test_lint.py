"""The code passes ruff with the project's rules (pyproject.toml, ``[tool.ruff.lint]``): an unused import, an
undefined name or a variable assigned and never read fails ``make test``, not a reviewer's eye."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def _ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           "--config", str(CONFIG), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_code_passes_ruff():
    result = _ruff("src", "tests")
    assert result.returncode == 0, f"ruff check src tests:\n{result.stdout}{result.stderr}"


def test_the_rules_find_an_unused_import_and_an_undefined_name(tmp_path):
    """The rules are on: a file with the two commonest mistakes is refused, each named."""
    (tmp_path / "sloppy.py").write_text("import os\n\n\ndef f():\n    return undefined_name\n")
    result = _ruff("sloppy.py", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "F401" in result.stdout and "`os` imported but unused" in result.stdout
    assert "F821" in result.stdout and "undefined_name" in result.stdout
