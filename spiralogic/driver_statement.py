"""A SQLAlchemy statement run on the database driver's own cursor.

For the one query every turn runs (its user's history): for 20 indexed rows,
SQLAlchemy's execution context and result objects cost twice what the
database does (``load/history_read.py``). SQLAlchemy still compiles the
statement, once per dialect, and its types still convert every parameter and
column; only those per-call objects are skipped, along with the engine's
cursor events.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect


class DriverStatement:
    """``statement`` compiled once for ``dialect``, to run on a connection's driver cursor."""

    def __init__(self, statement: sa.Select, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._binds = {name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()}
        #: the parameters whose values are in the statement (a JSON path, a limit), converted once
        self._fixed = {name: self._bound(name, bind.effective_value) for name, bind in compiled.binds.items() if not bind.required}
        self._order = tuple(compiled.positiontup) if compiled.positional else None
        results = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in statement.selected_columns]
        #: the columns whose driver value needs converting (SQLite's 0/1 for a boolean, say)
        self._converted = [(index, convert) for index, convert in enumerate(results) if convert is not None]

    def rows(self, connection: Connection, **values: Any) -> list[tuple]:
        """The statement's rows with ``values`` bound; a driver error raises as SQLAlchemy's."""
        arguments = self._arguments(values)
        cursor = connection.connection.cursor()
        try:
            cursor.execute(self.sql, arguments)
            rows = cursor.fetchall()
        except connection.dialect.loaded_dbapi.Error as exc:
            if connection.dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor):
                connection.invalidate(exc)
            raise sa.exc.DBAPIError.instance(self.sql, arguments, exc, connection.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
        return [self._convert(row) for row in rows] if self._converted else rows

    def _convert(self, row: tuple) -> tuple:
        values = list(row)
        for index, convert in self._converted:
            values[index] = convert(values[index])
        return tuple(values)

    def _arguments(self, values: dict[str, Any]) -> tuple | dict[str, Any]:
        named = {**self._fixed, **{name: self._bound(name, value) for name, value in values.items()}}
        return tuple(named[name] for name in self._order) if self._order is not None else named

    def _bound(self, name: str, value: Any) -> Any:
        convert = self._binds[name]
        return value if convert is None else convert(value)
