"""The SQLite connection's settings that the call path's speed rests on (docs/database.md)."""

import pytest
from django.db import connection
from django.db.backends.sqlite3.base import DatabaseWrapper

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite settings")


def test_a_database_file_is_read_without_mapping_it(tmp_path, django_db_blocker):
    """With two workers, each commit of one made the other unmap and remap the whole file (mmap_size)."""
    # The tests' own database is in memory; open a file with the installation's settings.
    wrapper = DatabaseWrapper({**connection.settings_dict, "NAME": str(tmp_path / "callbroker.sqlite3")}, "pragmas")
    try:
        with django_db_blocker.unblock(), wrapper.cursor() as cursor:
            found = {}
            for pragma in ("journal_mode", "synchronous", "busy_timeout", "mmap_size"):
                cursor.execute(f"PRAGMA {pragma}")
                found[pragma] = cursor.fetchone()[0]
    finally:
        wrapper.close()
    assert found == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 20000, "mmap_size": 0}
