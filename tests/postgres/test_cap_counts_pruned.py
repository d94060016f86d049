"""Cap counts of finished periods deleted on PostgreSQL (``callbroker network prune-cap-counts``): the batches'
``DELETE … WHERE id IN (SELECT … LIMIT)`` runs there as on SQLite, leaving the periods a cap still reads and
anything that is no period key."""

from __future__ import annotations

import datetime as dt

from callbroker.network.live import period_keys

def test_the_command_deletes_the_finished_periods_only(fresh_pg):
    target = fresh_pg.value("SELECT min(id) FROM network_target")  # the periods read in the farthest zone west
    now = dt.datetime.now(dt.UTC)
    current = set(period_keys(now, "Etc/GMT+12")) | set(period_keys(now - dt.timedelta(days=3), "Etc/GMT+12"))
    old = {f"H202001{day:02d}{hour:02d}" for day in range(1, 31) for hour in range(24)} | {"D20200101", "M202001"}
    old |= {"H2020110101b"}  # an hour's second time when the clocks went back (core/periods.py)
    odd = {"d:2020-01-01", "H20200", "X2020010100", "H2020110101c", "H20201101011"}
    for period in current | old | odd:
        fresh_pg.sql("INSERT INTO network_targetusage (target_id, period, count) VALUES (%s, %s, 1)",
                     (target, period))

    result = fresh_pg.cli("network", "prune-cap-counts")

    assert result.stdout.startswith(f"Deleted {len(old):,} cap counts of finished periods"), result.stdout
    assert {row[0] for row in fresh_pg.sql("SELECT period FROM network_targetusage")} == current | odd


def test_a_row_that_is_no_period_key_stays_in_a_database_sorting_text_by_language(fresh_pg):
    """A database created in a language's locale (``createdb`` on a host in ``en_US.UTF-8``, or ICU) sorts
    ``h2026110100`` between ``H`` and ``H2026120323``, letters' case weighing less than the digits: the range
    alone deleted it, though no hour key is lower case. Nor is an hour's second time's mark upper case."""
    target = fresh_pg.value("SELECT min(id) FROM network_target")
    fresh_pg.sql('ALTER TABLE network_targetusage ALTER COLUMN period TYPE varchar(16) COLLATE "en-US-x-icu"')
    odd = {"h2020010100", "d20200101", "m202001", "H2020110101B"}
    for period in odd | {"H2020010100", "D20200101", "M202001", "H2020110101b"}:
        fresh_pg.sql("INSERT INTO network_targetusage (target_id, period, count) VALUES (%s, %s, 1)",
                     (target, period))

    result = fresh_pg.cli("network", "prune-cap-counts")

    assert result.stdout.startswith("Deleted 4 cap counts of finished periods"), result.stdout
    assert {row[0] for row in fresh_pg.sql("SELECT period FROM network_targetusage")} == odd
