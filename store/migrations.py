"""Versioned schema migrations, run on start-up by `init_store` (never by hand).

Each step has a unique id; applied ids are recorded in `schema_migration`, so steps added by
different features are each applied exactly once, in id order. Number ranges by feature:
0001-0099 foundation, 0100 API client, 0200 directory (store/directory.py), 0300
notifications (store/notifications.py), 0400 login (store/login.py), 0500 menus/chat, 0600
operations (store/ops.py). Never edit a step that has shipped: add a new one.
"""

from __future__ import annotations

import peewee as pw

from .db import write_transaction

STEPS: list[tuple[str, callable]] = []


def step(step_id: str):
    """Register a migration step. Ids are unique; a duplicate is a programming error."""

    def register(fn):
        if any(sid == step_id for sid, _ in STEPS):
            raise RuntimeError(f"migration step {step_id} registered twice")
        STEPS.append((step_id, fn))
        return fn

    return register


@step("0001_core")
def _core(db: pw.Database) -> None:
    from . import models as m

    db.create_tables([m.Delivery, m.Outbox, m.KeyValue])


@step("0002_core_double_timestamps")
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


def migrate(db: pw.Database) -> list[str]:
    """Apply pending steps in id order; returns the ids applied."""
    from . import models as m  # imports every capability module, which registers its steps

    applied = []
    db.create_tables([m.SchemaMigration], safe=True)
    with write_transaction(db):
        _lock(db)
        done = {r.id for r in m.SchemaMigration.select(m.SchemaMigration.id)}
        for sid, fn in sorted(STEPS, key=lambda s: s[0]):
            if sid in done:
                continue
            fn(db)
            m.SchemaMigration.create(id=sid)
            applied.append(sid)
    return applied
