"""The call path's queries on the call table use its indexes on PostgreSQL, partitions and all.

Given a year of calls (tests/postgres/probe.py fills the table and ANALYZEs it), when a repeat caller's
call goes through the call flow, then EXPLAIN of every query it ran on the call table shows index scans
on every partition holding calls (never a sequential scan), the sticky-caller and duplicate lookups use
the (campaign, caller, started_at) or (caller, started_at) index, and the sticky lookup reads only the
partitions its window can touch. The pass closing the calls whose final status never came finds those
still in progress by the verdict index on every partition, calls and all, and closes the old ones only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tests.postgres.test_schema import month, name_of

CALLER_INDEXES = {"call_campaign_caller_idx", "call_caller_time_idx"}


def nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def test_call_path_queries_use_indexes(fresh_pg):
    result = fresh_pg.probe("explain_call_path")
    parent_index, rows = result["parent_index"], result["rows_by_partition"]
    populated = {name for name, count in rows.items() if count >= 500}
    assert len(populated) >= 11, rows  # a year of calls, spread over monthly partitions

    queries = {}
    for entry in result["plans"]:
        plan_nodes = list(nodes(entry["plan"][0]["Plan"]))
        seq_scanned = {n["Relation Name"] for n in plan_nodes if n["Node Type"] == "Seq Scan"}
        assert not seq_scanned & populated, f"sequential scan of {seq_scanned & populated}:\n{entry['sql']}"
        used = {parent_index.get(n["Index Name"], n["Index Name"]) for n in plan_nodes if "Index Name" in n}
        scanned = {n["Relation Name"] for n in plan_nodes if "Relation Name" in n}
        assert used, f"no index used:\n{entry['sql']}"
        queries[entry["sql"]] = (used, scanned)

    sticky = [q for q in queries if "connected_target_id IS NOT NULL" in q]
    duplicate = [q for q in queries if re.search(r'WHERE .*\bverdict"? = ', q)]  # the caller's last billable call
    assert sticky and duplicate, list(queries)
    for sql in sticky + duplicate:
        # The caller's index, at least on the older months (on the current month's partition the
        # planner may as well range-scan started_at: a few days of rows, also an index scan).
        assert queries[sql][0] & CALLER_INDEXES, (queries[sql][0], sql)
    # Partition pruning: the sticky lookup (a 1-day window) reads neither last year's months nor any
    # month before the previous one.
    older = {name for name in rows if name.startswith("calls_call_y") and name < name_of(month(-1))}
    assert len(older) >= 10
    assert not queries[sticky[0]][1] & older, queries[sticky[0]][1]


def test_the_calls_still_in_progress_are_found_by_the_verdict_index(fresh_pg):
    result = fresh_pg.probe("explain_close_abandoned")
    parent_index, rows = result["parent_index"], result["rows_by_partition"]
    populated = {name for name, count in rows.items() if count >= 500}
    assert len(populated) >= 11, rows
    assert sorted(result["closed"]) == ["CAleft100", "CAleft300", "CAleft40"]
    assert result["stages"] == {"CAleft100": "ended", "CAleft300": "ended", "CAleft40": "ended",
                                "CAtemplate": "ivr"}  # started now: not closed

    in_progress = []
    for entry in result["plans"]:
        plan_nodes = list(nodes(entry["plan"][0]["Plan"]))
        seq_scanned = {n["Relation Name"] for n in plan_nodes if n["Node Type"] == "Seq Scan"}
        assert not seq_scanned & populated, f"sequential scan of {seq_scanned & populated}:\n{entry['sql']}"
        used = {parent_index.get(n["Index Name"], n["Index Name"]) for n in plan_nodes if "Index Name" in n}
        assert used, f"no index used:\n{entry['sql']}"
        if re.search(r'WHERE .*\bverdict"? = .*\bstage"? = ', entry["sql"]):
            in_progress.append(used)
    assert len(in_progress) == 1, [entry["sql"] for entry in result["plans"]]
    assert [name for name in in_progress[0] if "verdict" in name], in_progress
