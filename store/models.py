"""Every table wqbot keeps. Core tables are here; each capability declares its tables in its own
module of this package (store/directory.py, store/notifications.py, store/login.py, …), imported
at the bottom so `store.models` is the one place to find them all. Schema changes are
migration steps (store/migrations.py `@step`), registered next to the models they create."""

from __future__ import annotations

import peewee as pw

from .clock import now
from .db import db


# Timestamps are DoubleField: peewee's FloatField is REAL (float4) on PostgreSQL, which rounds a
# Unix time to the nearest 128 seconds.
class Model(pw.Model):
    class Meta:
        database = db
        legacy_table_names = False


class SchemaMigration(Model):
    id = pw.CharField(primary_key=True, max_length=100)
    applied_at = pw.DoubleField(default=now)


# -- callbacks ---------------------------------------------------------------------------------
class Delivery(Model):
    """One row per callback delivery handled: the dedupe key that makes WeCom's retries no-ops.

    `reply` keeps the plaintext passive reply so a retried delivery gets the same answer."""

    key = pw.CharField(primary_key=True, max_length=64)
    kind = pw.CharField(max_length=64)
    received_at = pw.DoubleField(default=now, index=True)
    reply = pw.TextField(null=True)


class Outbox(Model):
    """Work promised inside a committed transaction and not yet done by the queue.

    Written in the same transaction as the effect that needs it, so a crash between commit and
    enqueue loses nothing: the sweeper re-enqueues rows that stay here too long."""

    id = pw.BigAutoField()
    task = pw.CharField(max_length=100)
    payload = pw.TextField()
    created_at = pw.DoubleField(default=now, index=True)
    enqueued_at = pw.DoubleField(default=now)
    attempts = pw.IntegerField(default=0)
    trace_id = pw.CharField(max_length=40, null=True)


class KeyValue(Model):
    """Small shared state with an expiry: access tokens and tickets in the embedded setup."""

    key = pw.CharField(primary_key=True, max_length=200)
    value = pw.TextField()
    expires_at = pw.DoubleField(null=True)


# Capability tables. Each module registers its migration steps with store.migrations.step.
import importlib as _importlib  # noqa: E402

for _mod in ("directory", "notifications", "login", "chat", "ops"):
    try:
        _m = _importlib.import_module(f"{__package__}.{_mod}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__package__}.{_mod}":
            raise
        continue
    globals().update({k: v for k, v in vars(_m).items() if isinstance(v, type) and issubclass(v, Model)})
