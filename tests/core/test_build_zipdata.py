"""``scripts/build_zipdata.py`` refuses a folder that lacks raw files in one line naming them, before reading any.

docs/geo-data.md lists the raw files with the public repository each comes from, for a reader who puts the
folder together: the script only looked for the gazetteer, and a folder missing another file ended in a
``FileNotFoundError`` traceback after reading the files before it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_zipdata.py"


def build(data: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(data), "--out", str(out)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_folder_missing_some_raw_files_is_refused_naming_them(tmp_path):
    data = tmp_path / "raw"
    data.mkdir()
    (data / "zcta_gazetteer_2025.txt.gz").write_bytes(b"")  # the one file the script looked for
    (data / "county_timezones_usgeo.csv").write_text("")
    result = build(data, tmp_path / "zips.csv.gz")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"build_zipdata.py: error: {data} lacks 8 of the raw ZIP files: "), last
    assert "zip_codes_zipcodes_pkg_2026-06.csv.gz" in last and "zcta_gazetteer_2025.txt.gz" not in last
    assert not (tmp_path / "zips.csv.gz").exists()


def test_the_files_checked_are_the_files_read():
    source = SCRIPT.read_text()
    read = set(re.findall(r'_open_text\(data / "([^"]+)"\)', source))
    checked = re.search(r"RAW_FILES = \((.*?)\n\)", source, re.S).group(1)
    assert read == set(re.findall(r'"([^"]+)"', checked)) and len(read) == 10
