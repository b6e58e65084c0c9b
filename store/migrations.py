"""Versioned schema migrations, run on start-up by `init_store` (never by hand).

Each step has a unique id; applied ids are recorded in `schema_migration`, so every step is
applied exactly once, in id order. Number ranges by table module: 0001-0099 core (here), 0200
directory (store/directory.py), 0300 notifications, 0400 login, 0500 chat, 0600 operations, 0700 follow-up (reminders, digest, tiles).
Each module lists its steps in `STEPS`; this one collects them.

Never edit a step that has shipped: add a new one, written with playhouse.migrate operations
(`SchemaMigrator.from_database(db)`: add_column, drop_not_null, …) so it does the same on SQLite
and PostgreSQL. A step that creates tables from the models (`create_tables`) creates them as the
models are now: later steps must then be harmless on such a fresh table (0203 is).
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw

from . import chat, console, directory, followup, login, notifications, ops
from . import models as m
from .db import write_transaction

Step = tuple[str, Callable[[pw.Database], None]]


def _core(db: pw.Database) -> None:
    db.create_tables([m.Delivery, m.Outbox, m.KeyValue])


def _core_double(db: pw.Database) -> None:
    # 0001 created these as REAL on PostgreSQL (float4: Unix times rounded to 128 s).
    if isinstance(db, pw.PostgresqlDatabase):
        for table, cols in (
            ("schema_migration", ("applied_at",)),
            ("delivery", ("received_at",)),
            ("outbox", ("created_at", "enqueued_at")),
            ("key_value", ("expires_at",)),
        ):
            for col in cols:
                db.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{col}" TYPE double precision')


def _lock(db: pw.Database):
    """Serialise concurrent start-ups: several web/worker processes may boot at once."""
    if isinstance(db, pw.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(72947301)")
    # SQLite: migrate()'s write_transaction() takes the write lock up front.


CORE_STEPS: list[Step] = [("0001_core", _core), ("0002_core_double_timestamps", _core_double)]
STEPS: list[Step] = sorted(
    [
        *CORE_STEPS,
        *directory.STEPS,
        *notifications.STEPS,
        *followup.STEPS,
        *login.STEPS,
        *chat.STEPS,
        *ops.STEPS,
        *console.STEPS,
    ],
    key=lambda s: s[0],
)
assert len({sid for sid, _ in STEPS}) == len(STEPS), "two migration steps share an id"


def migrate(db: pw.Database) -> list[str]:
    """Apply pending steps in id order; returns the ids applied."""
    applied = []
    db.create_tables([m.SchemaMigration], safe=True)
    with write_transaction(db):
        _lock(db)
        done = {r.id for r in m.SchemaMigration.select(m.SchemaMigration.id)}
        for sid, fn in STEPS:
            if sid in done:
                continue
            fn(db)
            m.SchemaMigration.create(id=sid)
            applied.append(sid)
    return applied
