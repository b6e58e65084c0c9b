"""The directory: departments, users, memberships, the change feed, and sync bookkeeping.

Names other capabilities depend on: `User`, `Department`, `UserDepartment`, `Change`
(the feed behind `/api/v1/org/changes`), and `record_change()` / `record_changes()`, which
append feed rows inside the caller's transaction.

Feed ordering. A reader polls `seq > after`; it must never miss a row that commits later with
a smaller seq. So seq is taken from the one `FeedCounter` row with `UPDATE … RETURNING`: the row
lock is held until the writer commits, so the next writer gets its seqs only after the previous
one's rows are visible (PostgreSQL), and SQLite runs one writer at a time anyway. A rolled-back
transaction rolls its counter bump back too, so there are no holes either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

from . import clock, prepared, statements
from .db import is_postgres
from .models import EpochField, Model, db, now


class Department(Model):
    id = pw.IntegerField(primary_key=True)
    name = pw.CharField(max_length=255, default="")
    parent_id = pw.IntegerField(null=True, index=True)
    order = pw.BigIntegerField(default=0)
    active = pw.BooleanField(default=True)
    # sha1 of what the directory last said about it (name, parent, order): unchanged → no write
    content_hash = pw.CharField(max_length=40, default="")
    details_at = EpochField(default=0.0)  # last time the name came from department/list|get
    updated_at = EpochField(default=now)


class User(Model):
    userid = pw.CharField(primary_key=True, max_length=64)
    name = pw.CharField(max_length=255, default="")
    mobile = pw.CharField(max_length=40, null=True)
    email = pw.CharField(max_length=255, null=True)
    position = pw.CharField(max_length=255, null=True)
    alias = pw.CharField(max_length=255, null=True)  # type: ignore[assignment]  # WeCom's 别名; shadows Model.alias()
    status = pw.SmallIntegerField(null=True)  # WeCom: 1 active, 2 disabled, 4 not activated, 5 left
    active = pw.BooleanField(default=True, index=True)
    account = pw.CharField(max_length=255, null=True, index=True)  # linked 微签 account key (null: none, or ambiguous)
    # The normalised SYNC_MATCH_FIELD value; `account` is this unless overridden or ambiguous (bot/sync/accounts.py)
    match_key = pw.CharField(max_length=255, null=True, index=True)
    biz_mail = pw.CharField(max_length=255, null=True)
    extattr = pw.TextField(null=True)  # JSON {name: value} of the custom fields (text ones)
    main_department = pw.IntegerField(null=True)
    mobile_source = pw.CharField(max_length=16, null=True)  # "directory" | "oauth"
    email_source = pw.CharField(max_length=16, null=True)
    # Content hashes of what the directory last said: details (user/get|list fields, incl. the
    # per-department order and leader flags) and the bare department set (user/list_id).
    detail_hash = pw.CharField(max_length=40, default="")
    dept_hash = pw.CharField(max_length=40, default="")
    details_at = EpochField(default=0.0, index=True)  # when details last came from the API
    created_at = EpochField(default=now)
    updated_at = EpochField(default=now)


class UserDepartment(Model):
    userid = pw.CharField(max_length=64)
    department_id = pw.IntegerField(index=True)
    order = pw.BigIntegerField(default=0)
    is_leader = pw.BooleanField(default=False)

    class Meta:
        primary_key = pw.CompositeKey("userid", "department_id")


class FeedCounter(Model):
    """One row (id=1): the last seq handed out. Locked by each feed writer until it commits."""

    id = pw.IntegerField(primary_key=True)
    last = pw.BigIntegerField(default=0)


class Change(Model):
    """The append-only change feed (`/api/v1/org/changes`, docs/api.md "The change feed")."""

    seq = pw.BigIntegerField(primary_key=True)
    kind = pw.CharField(max_length=32)
    ref = pw.CharField(max_length=64, column_name="ref_id")  # the userid or department id
    data = pw.TextField()
    at = EpochField(default=now)

    class Meta:
        table_name = "directory_change"


class SyncRunStatus(StrEnum):
    """SyncRun.status. partial: the run ended with errors, or read an incomplete listing (and so
    disabled no one); held: the mass-delete guard kept the disables back."""

    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"
    HELD = "held"
    FAILED = "failed"


class SyncRun(Model):
    """One reconciliation run: what it did and why (docs/sync.md)."""

    id = pw.AutoField()
    trigger = pw.CharField(max_length=16)  # periodic | cli | test
    full = pw.BooleanField(default=False)
    forced = pw.BooleanField(default=False)
    mode = pw.CharField(max_length=16, null=True)  # list | list_id; NULL: the run failed before it chose one
    status = pw.CharField(max_length=16, default=SyncRunStatus.RUNNING)  # SyncRunStatus
    started_at = EpochField(default=now, index=True)
    finished_at = EpochField(null=True)
    users_seen = pw.IntegerField(default=0)
    departments_seen = pw.IntegerField(default=0)
    created = pw.IntegerField(default=0)
    updated = pw.IntegerField(default=0)
    renamed = pw.IntegerField(default=0)
    disabled = pw.IntegerField(default=0)
    reactivated = pw.IntegerField(default=0)
    departments_created = pw.IntegerField(default=0)
    departments_updated = pw.IntegerField(default=0)
    departments_disabled = pw.IntegerField(default=0)
    held_disables = pw.IntegerField(default=0)  # disables the guards kept back
    rows_written = pw.IntegerField(default=0)  # user + department rows inserted or changed
    details_fetched = pw.IntegerField(default=0)  # user/get calls (list_id mode)
    api_calls = pw.TextField(default="{}")  # JSON {path: count}
    errors = pw.TextField(default="[]")  # JSON list of strings
    warnings = pw.TextField(default="[]")
    reason = pw.TextField(null=True)  # why disables were held, or why the run failed

    def as_dict(self) -> dict:
        out = {f: getattr(self, f) for f in self._meta.sorted_field_names}
        for f in ("api_calls", "errors", "warnings"):
            out[f] = json.loads(out[f] or "null")
        return out


class SyncState(Model):
    """Small sync facts that outlive a run: the fetch mode, the run lease."""

    key = pw.CharField(primary_key=True, max_length=64)
    value = pw.TextField(default="")
    holder = pw.CharField(max_length=64, null=True)
    expires_at = EpochField(null=True)
    updated_at = EpochField(default=now)


# -- the feed -----------------------------------------------------------------------------------
CHANGE_KINDS = (
    "user.created",
    "user.updated",
    "user.renamed",
    "user.deleted",
    "department.created",
    "department.updated",
    "department.deleted",
)


def _bump(n: int):
    table = FeedCounter._meta.table_name
    sql = f'UPDATE "{table}" SET "last" = "last" + {db.param} WHERE "id" = 1 RETURNING "last"'
    return prepared.execute(db.obj, sql, (n,)).fetchone()


def _allocate(n: int) -> int:
    """Reserve n seqs; returns the last one. Must run inside the caller's transaction."""
    row = _bump(n)
    if row is None:  # the migration creates the row; recreate it past the feed if it was deleted
        last = Change.select(pw.fn.COALESCE(pw.fn.MAX(Change.seq), 0)).scalar()
        FeedCounter.insert(id=1, last=last).on_conflict_ignore().execute()
        row = _bump(n)
    return int(row[0])


def record_changes(changes: Sequence[tuple[str, str | int, dict]]) -> list[int]:
    """Append feed rows `(kind, id, data)` in the open transaction; returns their seqs.

    Call inside `db.atomic()` with the store writes they describe, so both commit or neither."""
    if not changes:
        return []
    if not db.in_transaction():
        raise RuntimeError("record_changes() must run inside the transaction that makes the change")
    last = _allocate(len(changes))
    first = last - len(changes) + 1
    at = clock.now()
    rows = []
    for i, (kind, ref, data) in enumerate(changes):
        if kind not in CHANGE_KINDS:
            raise ValueError(f"unknown change kind {kind!r}")
        rows.append(
            {
                "seq": first + i,
                "kind": kind,
                "ref": str(ref),
                "data": json.dumps(data, ensure_ascii=False, sort_keys=True),
                "at": at,
            }
        )
    for i in range(0, len(rows), 500):  # slices: pw.chunked costs a callback's one row ~0.1 ms
        statements.insert(Change, rows[i : i + 500])
    return list(range(first, last + 1))


def record_change(kind: str, ref: str | int, data: dict) -> int:
    """Append one feed row in the open transaction; returns its seq."""
    return record_changes([(kind, str(ref), data)])[0]


# -- migrations -----------------------------------------------------------------------------------
def _create(database: pw.Database) -> None:
    database.create_tables([Department, User, UserDepartment, FeedCounter, Change, SyncRun, SyncState])
    FeedCounter.insert(id=1, last=0).on_conflict_ignore().execute()


def _double(database: pw.Database) -> None:
    """Timestamps as double precision: PostgreSQL's REAL (peewee's FloatField) keeps ~7 digits,
    which rounds epoch seconds to about two minutes. (SQLite's REAL is already a double.)"""
    if not is_postgres(database):
        return
    for model in (Department, User, Change, SyncRun, SyncState):
        for f in model._meta.sorted_fields:
            if isinstance(f, pw.DoubleField):
                database.execute_sql(
                    f'ALTER TABLE "{model._meta.table_name}" ALTER COLUMN "{f.column_name}" TYPE double precision'
                )


def _mode_nullable(database: pw.Database) -> None:
    """A run that fails before it chooses list or list_id mode records NULL, not '' (shown as —)."""
    migrator = SchemaMigrator.from_database(database)
    migrate(migrator.drop_not_null("sync_run", "mode"), migrator.drop_column_default("sync_run", "mode"))
    SyncRun.update(mode=None).where(SyncRun.mode == "").execute()


def _match_attributes(database: pw.Database) -> None:
    """SYNC_MATCH_FIELD=alias|biz_mail|extattr:<name>: the attributes it reads, and the key it linked by."""
    migrator = SchemaMigrator.from_database(database)
    have = {c.name for c in database.get_columns("user")}
    ops = [
        migrator.add_column("user", name, field)
        for name, field in (
            ("match_key", pw.CharField(max_length=255, null=True)),
            ("biz_mail", pw.CharField(max_length=255, null=True)),
            ("extattr", pw.TextField(null=True)),
        )
        if name not in have
    ]
    if ops:
        migrate(*ops)
    if "match_key" not in have:
        database.execute_sql('CREATE INDEX IF NOT EXISTS "user_match_key" ON "user" ("match_key")')
    User.update(match_key=User.account).where(User.match_key.is_null()).execute()


# migration steps (store/migrations.py runs them in id order, each once)
STEPS = [
    ("0201_directory", _create),
    ("0202_directory_double_timestamps", _double),
    ("0203_sync_run_mode_null_until_chosen", _mode_nullable),
    ("0204_user_match_attributes", _match_attributes),
]
