"""``callbroker billing statement|check``: statements from the ledger; the ledger checked against the calls.

``statement --buyer KEY`` lists the charges posted to a buyer in a month (one line per call, totals per
currency); ``statement --publisher KEY`` the payouts to a publisher. ``check`` exits non-zero when any
call's verdict, revenue or payout disagrees with the ledger (for monitoring and after incidents).
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Model

from callbroker.billing.reconcile import check_ledger
from callbroker.billing.statements import Period, Statement, buyer_statement, publisher_statement
from callbroker.calls.presenters import money_text
from callbroker.network.models import Buyer, Publisher
from callbroker.ops.commands import reading_the_database

# (header, width) of the statement table; the last column takes the rest of the line.
_COLUMNS = (
    ("CALL STARTED (UTC)", 19),
    ("CALLSID", 36),
    ("CAMPAIGN", 24),
    ("ENTRIES", 34),
    ("AMOUNT", 0),
)
_SHORT_KIND = {"charge": "charge", "charge_reversal": "reversal", "payout": "payout",
               "payout_reversal": "reversal"}
#: A reversal's reason goes on a line of its own under its call's row, starting under the CALLSID column:
#: the ENTRIES column said "charge, reversal" and only ``--json`` said why (its memo), which a buyer asking
#: about a missing charge needs.
_REASON_INDENT = " " * (_COLUMNS[0][1] + 2)


def _fit(text: str, width: int) -> str:
    if not width:
        return text
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.ljust(width)


def _month(value: str | None) -> Period:
    """The month of ``--month``; this month when the option is not given (an empty one is refused)."""
    if value is None:
        return Period.month_of()
    try:
        return Period.month(value)
    except ValueError as exc:
        raise CommandError(f"--month: {exc}") from None


def _find(model: type[Model], what: str, value: str) -> Model:
    """A buyer or publisher by key, else by name (case-insensitive); an error names the choices."""
    if not value.strip():
        raise CommandError(f"--{what}: give the {what}'s key or name (it is empty).")
    found = model.objects.filter(key=value).first()
    if found is not None:
        return found
    # Compared here, not with ``name__iexact``: SQLite folds the case of ASCII letters only ("ñandú").
    wanted = value.casefold()
    named = [row for row in model.objects.all() if row.name.casefold() == wanted][:2]  # a few hundred rows
    if len(named) == 1:
        return named[0]
    if named:
        raise CommandError(f"More than one {what} is named {value!r}: use the key.")
    raise CommandError(f"No {what} with key or name {value!r}.")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _totals_text(statement: Statement) -> str:
    if not statement.totals:
        return money_text(0)
    return ", ".join(money_text(total, currency) for currency, total in statement.totals.items())


class Command(BaseCommand):
    help = "Statements of a buyer's charges or a publisher's payouts; the ledger checked against the calls."
    # Read-only: no system checks, so billing can still be looked at while another part is broken.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{statement,check}")

        statement = actions.add_parser(
            "statement", help="A buyer's charges or a publisher's payouts in a month, one line per call, "
                              "with the total.")
        party = statement.add_mutually_exclusive_group(required=True)
        party.add_argument("--buyer", metavar="KEY", help="The buyer (key, or exact name).")
        party.add_argument("--publisher", metavar="KEY", help="The publisher (key, or exact name).")
        statement.add_argument("--month", metavar="YYYY-MM",
                               help="The month, in UTC, in which entries were posted (default: this month).")
        statement.add_argument("--json", action="store_true", help="JSON instead of a table.")

        check = actions.add_parser("check", help="Compare every call's verdict, revenue and payout with the "
                                                 "ledger; exit 1 on any disagreement.")
        check.add_argument("--month", metavar="YYYY-MM",
                           help="Only calls started in this month (UTC). Default: every call.")
        check.add_argument("--json", action="store_true", help="JSON instead of text.")

    def handle(self, *args, **options) -> None:
        with reading_the_database("the ledger"):
            if options["action"] == "statement":
                self.statement(options)
            else:
                self.check(options)

    def statement(self, options: dict) -> None:
        period = _month(options.get("month"))
        if options.get("buyer") is not None:
            statement = buyer_statement(_find(Buyer, "buyer", options["buyer"]), period)
            title = f"Charges to buyer {statement.name} ({statement.key}), posted in {period.label} (UTC)"
        else:
            statement = publisher_statement(_find(Publisher, "publisher", options["publisher"]), period)
            title = f"Payouts to publisher {statement.name} ({statement.key}), posted in {period.label} (UTC)"
        if options["json"]:
            self.stdout.write(json.dumps(statement.to_dict(), indent=2, ensure_ascii=False))
            return
        self.stdout.write(title)
        if not statement.lines:
            self.stdout.write("Nothing posted.")
            return
        self.stdout.write("  ".join(_fit(name, width) for name, width in _COLUMNS).rstrip())
        for line in statement.lines:
            started = f"{line.call_started_at:%Y-%m-%d %H:%M:%S}" if line.call_started_at else "—"
            entries = ", ".join(_SHORT_KIND.get(e.kind, e.kind) for e in line.entries)
            cells = (started, line.call_sid, line.campaign, entries, money_text(line.amount, line.currency))
            row = "  ".join(_fit(cell, width) for cell, (_, width) in zip(cells, _COLUMNS, strict=True))
            self.stdout.write(row.rstrip())
            for entry in line.entries:
                if entry.kind.endswith("_reversal"):
                    self.stdout.write(f"{_REASON_INDENT}reversal {money_text(entry.amount, line.currency)}: "
                                      f"{entry.memo or 'no reason recorded'}")
        self.stdout.write(f"Total: {_totals_text(statement)} ({_count(statement.calls, 'call')})")

    def check(self, options: dict) -> None:
        period = _month(options["month"]) if options.get("month") is not None else None
        result = check_ledger(period)
        if options["json"]:
            self.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        else:
            scope = f"calls started in {period.label} (UTC)" if period else "every call"
            checked = _count(result.calls_checked, "call")
            self.stdout.write(f"Ledger check of {scope}: {checked} billable or with entries, "
                              f"{result.billable_calls} billable, {result.charged_calls} charged, "
                              f"{result.paid_calls} paid out.")
            for mismatch in result.mismatches:
                self.stdout.write(f"  {mismatch}")
        if not result.ok:
            calls = len({m.call_sid for m in result.mismatches})
            raise CommandError(f"The ledger disagrees with {_count(calls, 'call')} "
                               f"({_count(len(result.mismatches), 'problem')}).")
        if not options["json"]:
            self.stdout.write("OK: the ledger agrees with every call.")
