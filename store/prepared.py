"""PostgreSQL: the statements run for every callback, prepared once per connection.

PostgreSQL parses and plans each statement it is sent. For the short statements a callback
makes (a key lookup, a one-row upsert) that is a third or more of the server's CPU for it
(bench/README.md), and the text is the same every time. `execute()` sends such a statement as
`PREPARE` the first time a connection sees it and as `EXECUTE` from then on; on SQLite, or for a
text it cannot prepare, it is `execute_sql` as before.

    cursor = prepared.execute(database, sql, params)

Only statements whose text the caller builds from a fixed set of shapes belong here (each
prepared statement lives as long as its connection). A text PostgreSQL refuses to prepare (a
parameter whose type it cannot infer) is remembered and sent plainly; the refusal is taken back
with a savepoint, so the caller's transaction goes on."""

from __future__ import annotations

import re
from typing import Any

import peewee
import psycopg2  # type: ignore[import-untyped]

_PLACEHOLDER = re.compile(r"%%|%s|%")
MAX_PER_CONNECTION = 512  # distinct texts; past it, statements are sent plainly


def _numbered(sql: str) -> str | None:
    """`sql` with psycopg2's placeholders as PostgreSQL's ($1, $2…), or None if it has others."""
    n = 0
    bad = False

    def sub(m: re.Match[str]) -> str:
        nonlocal n, bad
        token = m.group()
        if token == "%%":
            return "%"
        if token == "%s":
            n += 1
            return f"${n}"
        bad = True
        return token

    out = _PLACEHOLDER.sub(sub, sql)
    return None if bad else out


class _Prepared:
    """One connection's prepared statements: text -> the EXECUTE to send, or None (send plainly)."""

    __slots__ = ("conn", "executes")

    def __init__(self, conn: Any):
        self.conn = conn
        self.executes: dict[str, str | None] = {}


def _for_connection(database: peewee.Database) -> _Prepared:
    conn = database.connection()
    state = database._state  # type: ignore[attr-defined]  # peewee's thread-local state, as the connection is
    prepared = getattr(state, "wqbot_prepared", None)
    if prepared is None or prepared.conn is not conn:  # a new connection starts with none
        prepared = _Prepared(conn)
        state.wqbot_prepared = prepared
    return prepared


def _prepare(database: peewee.Database, prepared: _Prepared, sql: str, params: int) -> str | None:
    numbered = _numbered(sql)
    if numbered is None or len(prepared.executes) >= MAX_PER_CONNECTION:
        return None
    name = f"wqbot_{len(prepared.executes)}"
    cursor = database.cursor()
    in_transaction = database.in_transaction()
    try:
        if in_transaction:
            cursor.execute("SAVEPOINT wqbot_prepare")
        cursor.execute(f"PREPARE {name} AS {numbered}")
        if in_transaction:
            cursor.execute("RELEASE SAVEPOINT wqbot_prepare")
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        raise  # the connection, not the statement
    except psycopg2.Error:  # PostgreSQL refused to prepare it: a parameter's type it cannot infer, say
        if in_transaction:
            cursor.execute("ROLLBACK TO SAVEPOINT wqbot_prepare")
            cursor.execute("RELEASE SAVEPOINT wqbot_prepare")
        return None
    return f"EXECUTE {name} (" + ", ".join(["%s"] * params) + ")" if params else f"EXECUTE {name}"


def execute(database: peewee.Database, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> Any:
    """`database.execute_sql(sql, params)`, prepared on PostgreSQL. Returns the cursor."""
    if not isinstance(database, peewee.PostgresqlDatabase):
        return database.execute_sql(sql, params)
    prepared = _for_connection(database)
    executes = prepared.executes
    if sql in executes:
        run = executes[sql]
    else:
        run = executes[sql] = _prepare(database, prepared, sql, len(params))
    return database.execute_sql(run if run is not None else sql, params)
