"""store/prepared: on PostgreSQL a statement is prepared the first time a connection sends it and
executed by name after that, with the same results; a statement PostgreSQL cannot prepare is sent
as it is, and the transaction it was met in goes on. On SQLite it is `execute_sql`."""

from __future__ import annotations

import pytest

from store import prepared, write_transaction
from store.db import db, is_postgres
from store.models import Delivery


def sql(text: str) -> str:
    """`text` as the backend takes it: psycopg2's %s and %% on PostgreSQL, ? and % on SQLite."""
    return text if is_postgres() else text.replace("%s", "?").replace("%%", "%")


INSERT = (
    'INSERT INTO "delivery" ("key", "kind", "received_at", "reply") VALUES (%s, %s, %s, %s) '
    'ON CONFLICT ("key") DO NOTHING RETURNING "key"'
)
SELECT = 'SELECT "key", "reply" FROM "delivery" WHERE "kind" LIKE \'event:%%\' AND "key" = %s'


def postgres_only() -> None:
    if not is_postgres():
        pytest.skip("PostgreSQL prepares statements; on SQLite there is nothing to prepare")


def _prepared_names() -> list[str]:
    return [r[0] for r in db.obj.execute_sql("SELECT name FROM pg_prepared_statements ORDER BY name").fetchall()]


def test_results_and_row_counts_are_the_plain_statements(store):
    database = db.obj
    with write_transaction():
        assert prepared.execute(database, sql(INSERT), ["a1", "event:click", 1.5, "<xml/>"]).fetchall() == [("a1",)]
        assert prepared.execute(database, sql(INSERT), ["a1", "event:click", 2.5, None]).fetchall() == []  # a duplicate
        assert prepared.execute(database, sql(INSERT), ["a2", "text", 3.5, None]).fetchall() == [("a2",)]
    assert prepared.execute(database, sql(SELECT), ["a1"]).fetchall() == [("a1", "<xml/>")]  # %% is a literal %
    assert prepared.execute(database, sql(SELECT), ["a2"]).fetchall() == []  # "text" is not LIKE 'event:%'
    update = sql('UPDATE "delivery" SET "reply" = %s WHERE "kind" = %s')
    cursor = prepared.execute(database, update, ["r", "text"])
    assert cursor.rowcount == 1
    assert Delivery.get(Delivery.key == "a2").reply == "r"


def test_postgresql_prepares_once_per_connection(store):
    postgres_only()
    database = db.obj
    database.close()
    database.connect()
    assert _prepared_names() == []
    for key in ("b1", "b2", "b3"):
        prepared.execute(database, INSERT, [key, "event:click", 1.0, None])
    assert _prepared_names() == ["wqbot_0"]  # one statement, executed three times
    assert Delivery.select().count() == 3
    database.close()
    database.connect()  # a new connection has none, and prepares again
    prepared.execute(database, INSERT, ["b4", "event:click", 1.0, None])
    assert _prepared_names() == ["wqbot_0"] and Delivery.select().count() == 4


def test_a_statement_postgresql_cannot_prepare_is_sent_plainly_and_the_transaction_goes_on(store):
    postgres_only()
    database = db.obj
    untyped = "SELECT %s IS NULL"  # PostgreSQL cannot infer the parameter's type
    with write_transaction():
        prepared.execute(database, INSERT, ["c1", "event:click", 1.0, None])
        assert prepared.execute(database, untyped, [None]).fetchall() == [(True,)]
        assert prepared.execute(database, untyped, ["x"]).fetchall() == [(False,)]
        prepared.execute(database, INSERT, ["c2", "event:click", 1.0, None])
    assert sorted(d.key for d in Delivery.select()) == ["c1", "c2"]  # nothing was rolled back
    assert prepared._numbered("SELECT 1 WHERE a LIKE '%x'") is None  # a lone % is left alone
