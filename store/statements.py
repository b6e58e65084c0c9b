"""Statements built once per shape and reused: for the store writes every callback makes.

peewee builds a query's SQL anew on every execution, walking its expression tree; for the few
rows a callback writes, that costs several times what the database spends running them (an
update_user event: ~1.8 ms, of which SQLite ~0.1 ms: bench/README.md). The SQL here depends only
on the model, the columns and the number of rows, so it is built once and cached; values go
through each field's `db_value`, as peewee would pass them.

    insert(User, row, conflict=("userid",), keep=("created_at",))   # upsert one row
    insert(UserDepartment, rows)                                      # several rows, one statement
    select_one(User, "userid", uid)                                  # a model instance or None
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TypeVar

import peewee as pw

from .db import db, is_postgres

M = TypeVar("M", bound=pw.Model)


def _columns(model: type[pw.Model], names: Sequence[str]) -> list[str]:
    fields = model._meta.fields
    return [f'"{fields[n].column_name}"' for n in names]


@lru_cache(maxsize=512)
def _insert_sql(
    model: type[pw.Model],
    names: tuple[str, ...],
    rows: int,
    conflict: tuple[str, ...],
    keep: tuple[str, ...],
    returning: str | None,
    postgres: bool,
) -> str:
    p = "%s" if postgres else "?"
    cols = _columns(model, names)
    values = ", ".join(["(" + ", ".join([p] * len(names)) + ")"] * rows)
    sql = f'INSERT INTO "{model._meta.table_name}" ({", ".join(cols)}) VALUES {values}'
    if conflict:
        targets = ", ".join(_columns(model, conflict))
        updated = [c for n, c in zip(names, cols, strict=True) if n not in conflict and n not in keep]
        if updated:
            sql += f" ON CONFLICT ({targets}) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in updated)
        else:
            sql += f" ON CONFLICT ({targets}) DO NOTHING"
    if returning:
        sql += f" RETURNING {_columns(model, (returning,))[0]}"
    return sql


def insert(
    model: type[pw.Model],
    rows: dict[str, Any] | Sequence[dict[str, Any]],
    *,
    conflict: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
    returning: str | None = None,
) -> Any:
    """INSERT one row (a dict) or several (with the same keys), field names as keys. `conflict`:
    the unique columns of an upsert, which then updates every other given column except `keep`
    (the row's own values, as peewee's `on_conflict(update=…)` with them). Returns the cursor."""
    batch = [rows] if isinstance(rows, dict) else list(rows)
    given = tuple(batch[0])
    fields = model._meta.fields
    # fields not given get their defaults on insert, as peewee gives them (they are Python-side,
    # not in the schema), and an upsert leaves them as they are
    defaults = _defaults(model, given)
    names = given + tuple(defaults)
    converters = [fields[n].db_value for n in names]
    params: list[Any] = []
    for row in batch:
        values = [row[n] for n in given] + [d() if callable(d) else d for d in defaults.values()]
        params += [conv(v) for conv, v in zip(converters, values, strict=True)]
    database = db.obj
    sql = _insert_sql(model, names, len(batch), conflict, keep + tuple(defaults), returning, is_postgres(database))
    return database.execute_sql(sql, params)


@lru_cache(maxsize=256)
def _defaults(model: type[pw.Model], given: tuple[str, ...]) -> dict[str, Any]:
    return {n: f.default for n, f in model._meta.fields.items() if n not in given and f.default is not None}


@lru_cache(maxsize=128)
def _select_sql(model: type[pw.Model], by: str, postgres: bool) -> str:
    p = "%s" if postgres else "?"
    cols = ", ".join(_columns(model, list(model._meta.fields)))
    return f'SELECT {cols} FROM "{model._meta.table_name}" WHERE {_columns(model, (by,))[0]} = {p}'


def select_one(model: type[M], by: str, value: Any) -> M | None:
    """The row of `model` whose field `by` (unique) equals `value`, as a model instance, or None."""
    database = db.obj
    row = database.execute_sql(_select_sql(model, by, is_postgres(database)), (value,)).fetchone()
    if row is None:
        return None
    fields = model._meta.fields
    instance = model(__no_default__=1)
    instance.__data__ = {name: fields[name].python_value(v) for name, v in zip(fields, row, strict=True)}
    return instance
