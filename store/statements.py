"""Statements built once per shape and reused: for the store writes every callback makes.

peewee builds a query's SQL anew on every execution, walking its expression tree; for the few
rows a callback writes, that costs several times what the database spends running them (an
update_user event: ~1.8 ms, of which SQLite ~0.1 ms: bench/README.md). The SQL here depends only
on the model, the columns and the number of rows, so it is built once and cached; values go
through each field's `db_value`, as peewee would pass them.

    insert(User, row, conflict=("userid",), keep=("created_at",))   # upsert one row
    insert(UserDepartment, rows)                                      # several rows, one statement
    select_one(User, "userid", uid)                                  # a model instance or None
    select_first(NotifyRecipient, {"notification": nid, "status": Not("invalid"), "userid": uid})
    update_returning(NotifyTask, {"revision": Plus(1)}, where={...}, returning=("revision",))

`where` maps field names to the value they must equal (None: IS NULL), `Not(v)` (!= v; Not(None):
IS NOT NULL) or `LowerEquals(v)` (LOWER(column) = v.lower()), all joined by AND.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import peewee as pw

from . import prepared
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
    return prepared.execute(database, sql, params)


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
    row = prepared.execute(database, _select_sql(model, by, is_postgres(database)), (value,)).fetchone()
    return None if row is None else _instance(model, row)


def _instance(model: type[M], row: Sequence[Any]) -> M:
    fields = model._meta.fields
    instance = model(__no_default__=1)
    instance.__data__ = {name: fields[name].python_value(v) for name, v in zip(fields, row, strict=True)}
    return instance


# -- conditions and updates ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Not:
    """In a `where`: the column differs from `value` (SQL `!=`: a NULL column matches neither)."""

    value: Any


@dataclass(frozen=True, slots=True)
class LowerEquals:
    """In a `where`: LOWER(column) = value.lower(). The value is passed as given (lower-cased), not
    through the field's db_value: peewee converts only values compared with a bare field."""

    value: str


@dataclass(frozen=True, slots=True)
class Plus:
    """In an update's values: column = column + amount (e.g. a revision that counts changes)."""

    amount: Any


_EQ, _NE, _LOWER, _NULL, _NOT_NULL, _SET, _PLUS = "=", "!=", "lower", "null", "not null", "set", "plus"


def _condition(v: Any) -> str:
    if v is None:
        return _NULL
    if type(v) is Not:
        return _NOT_NULL if v.value is None else _NE  # peewee's `field != None` is IS NOT NULL too
    return _LOWER if type(v) is LowerEquals else _EQ


def _where_shape(where: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((n, _condition(v)) for n, v in where.items())


def _where_params(model: type[pw.Model], where: Mapping[str, Any]) -> list[Any]:
    fields = model._meta.fields
    params = []
    for n, v in where.items():
        if v is None or (type(v) is Not and v.value is None):
            continue
        if type(v) is LowerEquals:
            params.append(v.value.lower())
        else:
            params.append(fields[n].db_value(v.value if type(v) is Not else v))
    return params


def _where_sql(model: type[pw.Model], shape: tuple[tuple[str, str], ...], p: str) -> str:
    terms = []
    for name, kind in shape:
        column = _columns(model, (name,))[0]
        if kind == _NULL:
            terms.append(f"{column} IS NULL")
        elif kind == _NOT_NULL:
            terms.append(f"{column} IS NOT NULL")
        elif kind == _LOWER:
            terms.append(f"LOWER({column}) = {p}")
        else:
            terms.append(f"{column} {kind} {p}")
    return " AND ".join(terms)


@lru_cache(maxsize=128)
def _select_first_sql(model: type[pw.Model], shape: tuple[tuple[str, str], ...], postgres: bool) -> str:
    cols = ", ".join(_columns(model, list(model._meta.fields)))
    where = _where_sql(model, shape, "%s" if postgres else "?")
    return f'SELECT {cols} FROM "{model._meta.table_name}" WHERE {where} LIMIT 1'


def select_first(model: type[M], where: Mapping[str, Any]) -> M | None:
    """A row of `model` matching `where`, as a model instance, or None: in no particular order,
    as peewee's `.where(...).first()`."""
    database = db.obj
    sql = _select_first_sql(model, _where_shape(where), is_postgres(database))
    row = prepared.execute(database, sql, _where_params(model, where)).fetchone()
    return None if row is None else _instance(model, row)


@lru_cache(maxsize=128)
def _update_sql(
    model: type[pw.Model],
    values: tuple[tuple[str, str], ...],
    where: tuple[tuple[str, str], ...],
    returning: tuple[str, ...],
    postgres: bool,
) -> str:
    p = "%s" if postgres else "?"
    assignments = []
    for name, kind in values:
        column = _columns(model, (name,))[0]
        assignments.append(f"{column} = ({column} + {p})" if kind == _PLUS else f"{column} = {p}")
    sql = f'UPDATE "{model._meta.table_name}" SET {", ".join(assignments)} WHERE {_where_sql(model, where, p)}'
    if returning:
        sql += " RETURNING " + ", ".join(_columns(model, returning))
    return sql


def update_returning(
    model: type[pw.Model], values: Mapping[str, Any], *, where: Mapping[str, Any], returning: tuple[str, ...]
) -> list[tuple[Any, ...]]:
    """UPDATE the rows matching `where` to `values` (field names as keys; `Plus(n)` adds to the
    column), and the changed rows' `returning` fields after the change (python values), one tuple
    per row changed: none when the condition did not hold, so a conditional update's winner sees
    one. One statement, where a separate read would cost another round (SQLite has RETURNING from
    3.35, which the feed counter in store/directory.py already needs)."""
    fields = model._meta.fields
    params = [fields[n].db_value(v.amount) if type(v) is Plus else fields[n].db_value(v) for n, v in values.items()]
    params += _where_params(model, where)
    shape = tuple((n, _PLUS if type(v) is Plus else _SET) for n, v in values.items())
    database = db.obj
    sql = _update_sql(model, shape, _where_shape(where), returning, is_postgres(database))
    converters = [fields[n].python_value for n in returning]
    # every row fetched: SQLite makes the changes on the statement's first step, and a statement
    # left unfinished would still be running when the transaction commits
    rows = prepared.execute(database, sql, params).fetchall()
    return [tuple(conv(v) for conv, v in zip(converters, row, strict=True)) for row in rows]
