"""On PostgreSQL, a search term holding a NUL character matches nothing, never a 500.

PostgreSQL refuses a NUL in a query's text (``DataError: PostgreSQL text fields cannot contain NUL (0x00)
bytes``). The admin lists' search boxes refuse one through Django's form (a redirect with ``?e=1``), but the
autocomplete lookups behind a target's buyer and campaign and a tracking number's campaign and publisher
passed it to the database: a 500 until 2026-12-07 (SQLite takes the character, so only PostgreSQL shows it).
"""

from __future__ import annotations


def test_a_search_term_holding_a_nul_finds_nothing_and_is_no_error(pg):
    answers = pg.probe("admin_searches", terms=["a\x00b", "\x00", ""])

    with_nul = {where: answer for where, answer in answers.items() if not where.endswith("''")}
    assert len(with_nul) == 14, answers
    assert all(answer in ([200, 0], [200, None], [302, None]) for answer in with_nul.values()), repr(answers)
    # An empty term still lists every choice: the lookups themselves work on this database.
    assert all(answer[0] == 200 and (answer[1] is None or answer[1] > 0)
               for where, answer in answers.items() if where.endswith("''")), answers
