"""Migration operations shared by callbroker's migrations.

Applied migrations import these, and a migration must do tomorrow what it did the day it was applied:
never change what an operation here does. A new behaviour is a new operation.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db.migrations.operations.base import Operation


class DropIndexes(Operation):
    """Drop indexes by name (``DROP INDEX IF EXISTS``); going back creates each again on its one column.

    ``indexes`` maps an index's name to its (table, column), as Django named and made it. With
    ``opclass`` (e.g. ``varchar_pattern_ops``) the index came back with that operator class; with
    ``vendor`` the operation runs on that database backend only (``postgresql``).

    Used instead of letting Django alter a field's ``db_index``: on SQLite that copies the whole table,
    and on PostgreSQL dropping a partitioned index by name drops it on every partition at once. The
    database only: Django's migration state is changed beside it (``SeparateDatabaseAndState``).
    """

    reversible = True
    reduces_to_sql = True

    def __init__(self, indexes: Mapping[str, tuple[str, str]], *, opclass: str = "", vendor: str = "") -> None:
        self.indexes = dict(indexes)
        self.opclass = opclass
        self.vendor = vendor

    def deconstruct(self):
        kwargs = {key: value for key, value in (("opclass", self.opclass), ("vendor", self.vendor)) if value}
        return self.__class__.__qualname__, [self.indexes], kwargs

    def state_forwards(self, app_label, state) -> None:
        pass  # the database only

    def _applies(self, schema_editor) -> bool:
        return not self.vendor or schema_editor.connection.vendor == self.vendor

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if self._applies(schema_editor):
            for name in self.indexes:
                schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if self._applies(schema_editor):
            opclass = f" {self.opclass}" if self.opclass else ""
            for name, (table, column) in self.indexes.items():
                schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}"{opclass})')

    def describe(self) -> str:
        where = f" ({self.vendor} only)" if self.vendor else ""
        return f"Drop index{'es' if len(self.indexes) > 1 else ''} {', '.join(self.indexes)}{where}"

    @property
    def migration_name_fragment(self) -> str:
        return "drop_indexes"
