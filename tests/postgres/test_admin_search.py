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


def test_a_list_filter_holding_a_nul_is_a_bad_lookup_not_a_500(pg):
    """The lists' filters passed such a value to the database too: ``?category=a%00b`` on the campaigns (a
    filter the list offers), or a hand-made ``?call_sid=%00`` on the calls, was a 500 (``DataError``)."""
    pages = [["/admin/network/campaign/", {"category": "a\x00b"}], ["/admin/network/buyer/", {"timezone": "\x00"}],
             ["/admin/network/campaign/", {"key": "a\x00"}], ["/admin/calls/call/", {"call_sid": "\x00"}],
             ["/admin/network/targetusage/", {"period": "H\x00"}]]
    answers = pg.probe("admin_lists", pages=pages)

    assert len(answers) == 5, answers
    assert all(answer == [302, url.partition("?")[0] + "?e=1"] for url, answer in answers.items()), answers
    # The same lists without the NUL still answer their page: the filters themselves work.
    plain = pg.probe("admin_lists", pages=[[path, {name: value.replace("\x00", "")}]
                                           for path, parameters in pages for name, value in parameters.items()])
    assert all(answer == [200, None] for answer in plain.values()), plain
