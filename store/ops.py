"""Operations tables: recent errors shown on the admin console, and the admin actions audit.

`OpsError` keeps one row per distinct problem (source + message), counting repeats, so a
failing task retried a hundred times is one line with count=100, not a hundred rows.
"""

from __future__ import annotations

import hashlib

import peewee as pw

from . import clock
from .models import EpochField, Model, now


class OpsError(Model):
    key = pw.CharField(primary_key=True, max_length=40)  # sha1(source, message)
    source = pw.CharField(max_length=100)  # task name, "sync", "wecom", …
    message = pw.TextField()  # redacted before it is stored
    hint = pw.TextField(default="")  # what to fix, naming the setting or WeCom console page
    count = pw.IntegerField(default=1)
    first_at = EpochField(default=now)
    last_at = EpochField(default=now, index=True)
    trace_id = pw.CharField(max_length=40, null=True)


class AdminAudit(Model):
    """Who pressed which button on the admin console, and what came of it."""

    id = pw.BigAutoField()
    at = EpochField(default=now, index=True)
    userid = pw.CharField(max_length=100)  # WeCom userid, or "password" for the local admin login
    action = pw.CharField(max_length=50)
    target = pw.CharField(max_length=200, default="")
    result = pw.TextField(default="")


class AdminValidAfter(Model):
    """Per admin: sessions issued at or before `valid_after` are over (set at logout)."""

    userid = pw.CharField(primary_key=True, max_length=100)  # WeCom userid, or "admin" (password login)
    valid_after = EpochField()

    class Meta:
        table_name = "admin_valid_after"


def remember_error(source: str, message: str, hint: str = "", trace_id: str | None = None) -> None:
    """One row per distinct (source, message): a repeat counts up and refreshes its hint. The
    caller redacts (bot/observability/problems.py)."""
    key = hashlib.sha1(f"{source}\0{message}".encode()).hexdigest()
    t = clock.now()
    OpsError.insert(
        key=key, source=source[:100], message=message, hint=hint, first_at=t, last_at=t, trace_id=trace_id
    ).on_conflict(
        conflict_target=[OpsError.key],
        update={
            OpsError.count: OpsError.count + 1,
            OpsError.last_at: t,
            OpsError.hint: hint,
            OpsError.trace_id: trace_id,
        },
    ).execute()


def _ops_tables(db: pw.Database) -> None:
    db.create_tables([OpsError, AdminAudit])


def _admin_valid_after(db: pw.Database) -> None:
    db.create_tables([AdminValidAfter])


# migration steps (store/migrations.py runs them in id order, each once)
STEPS = [
    ("0601_ops_tables", _ops_tables),
    ("0602_admin_valid_after", _admin_valid_after),
]
