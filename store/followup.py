"""Follow-up on open tasks (docs/notifications.md, "Follow-up"): who was reminded of a deadline,
who got today's digest, and what each member's 工作台 tile shows.

- `TaskReminder`   one row per (task, round, recipient) reminded: the exactly-once record
- `DigestSent`     one row per (China-time day, member): claimed before the send, so two workers
                   or a restart never send a member two digests on one day; the exact body is kept
                   so a retry after a crash is byte-identical (WeCom's duplicate check then drops it)
- `WorkbenchTile`  one row per member whose tile wqbot set: the counts WeCom shows, when they were
                   set, and whether they may be stale (`dirty`)

Migration 0701 also gives `notify_task` its reminder columns: `remind_before` (seconds; NULL: the
REMIND_BEFORE_HOURS default), `reminded_round` (the round whose reminders are done) and
`remind_lease_until` (a worker is sending them).
"""

from __future__ import annotations

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

from .models import EpochField, Model, now
from .notifications import NotifyTask


class TaskReminder(Model):
    task_id = pw.CharField(max_length=128)
    round = pw.IntegerField()
    userid = pw.CharField(max_length=200)
    status = pw.CharField(max_length=16)  # sent | invalid | failed
    at = EpochField(default=now, index=True)
    error = pw.TextField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("task_id", "round", "userid")


class DigestSent(Model):
    day = pw.CharField(max_length=10)  # YYYY-MM-DD, China time
    userid = pw.CharField(max_length=200)
    status = pw.CharField(max_length=16, default="sending")  # sending | sent | failed
    body = pw.TextField()  # the exact message/send body
    claimed_at = EpochField(default=now)
    sent_at = EpochField(null=True)
    error = pw.TextField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("day", "userid")


class WorkbenchTile(Model):
    userid = pw.CharField(primary_key=True, max_length=200)
    approve = pw.IntegerField(null=True)  # the counts last sent (NULL: never); refused if `error`
    sign = pw.IntegerField(null=True)
    pushed_at = EpochField(null=True, index=True)
    claimed_at = EpochField(null=True)
    dirty = pw.BooleanField(default=True, index=True)
    error = pw.TextField(null=True)


TABLES = [TaskReminder, DigestSent, WorkbenchTile]


def _create(db: pw.Database) -> None:
    db.create_tables(TABLES)


def _task_columns(db: pw.Database) -> None:
    have = {c.name for c in db.get_columns(NotifyTask._meta.table_name)}
    m = SchemaMigrator.from_database(db)
    ops = []
    table = NotifyTask._meta.table_name
    for name, field in (
        ("remind_before", pw.DoubleField(null=True)),
        ("reminded_round", pw.IntegerField(default=0)),
        ("remind_lease_until", pw.DoubleField(null=True)),
    ):
        if name not in have:  # a fresh 0301 already made them from the model
            ops.append(m.add_column(table, name, field))
    migrate(*ops)


STEPS = [
    ("0701_followup", _create),
    ("0702_task_reminder_columns", _task_columns),
]
