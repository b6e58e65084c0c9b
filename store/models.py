"""The core tables (delivery keys, the outbox, shared key-values) and what every table builds on:
`Model` and `EpochField`. Each capability declares its tables in its own module of this package
(store/directory.py, store/notifications.py, store/login.py, store/chat.py, store/ops.py), with
the migration steps that create them; store/migrations.py runs them all in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar

import peewee as pw

from .clock import now
from .db import db

if TYPE_CHECKING:
    # peewee's stubs give a field's value type from its constructor's `null` argument (float, or
    # float | None when null=True); a subclass of DoubleField would read as Any.
    EpochField = pw.DoubleField
else:

    class EpochField(pw.DoubleField):
        """A moment as Unix seconds (what `store.clock.now()` gives). A double on purpose: peewee's
        FloatField is REAL (float4) on PostgreSQL, which rounds a Unix time to 128-second steps."""


if TYPE_CHECKING:
    _M = TypeVar("_M", bound=pw.Model)

    class _Select(pw.ModelSelect[_M]):
        # peewee's stubs say .tuples() and .dicts() still yield model instances; they yield rows,
        # whose columns only the query knows.
        def tuples(self, as_tuple: bool = True) -> _Select[Any]: ...
        def dicts(self, as_dict: bool = True) -> _Select[Any]: ...


class Model(pw.Model):
    class Meta:
        database = db
        legacy_table_names = False

    if TYPE_CHECKING:

        @classmethod
        def select(cls, *fields: Any) -> _Select[Self]: ...


class SchemaMigration(Model):
    id = pw.CharField(primary_key=True, max_length=100)
    applied_at = EpochField(default=now)


# -- callbacks ---------------------------------------------------------------------------------
class Delivery(Model):
    """One row per callback delivery handled: the dedupe key that makes WeCom's retries no-ops.

    `reply` keeps the plaintext passive reply so a retried delivery gets the same answer."""

    key = pw.CharField(primary_key=True, max_length=64)
    kind = pw.CharField(max_length=64)
    received_at = EpochField(default=now, index=True)
    reply = pw.TextField(null=True)


class Outbox(Model):
    """Work promised inside a committed transaction and not yet done by the queue.

    Written in the same transaction as the effect that needs it, so a crash between commit and
    enqueue loses nothing: the sweeper re-enqueues rows that stay here too long."""

    id = pw.BigAutoField()
    task = pw.CharField(max_length=100)
    payload = pw.TextField()
    created_at = EpochField(default=now, index=True)
    enqueued_at = EpochField(default=now)
    attempts = pw.IntegerField(default=0)
    trace_id = pw.CharField(max_length=40, null=True)


class KeyValue(Model):
    """Small shared state with an expiry: access tokens and tickets in the embedded setup."""

    key = pw.CharField(primary_key=True, max_length=200)
    value = pw.TextField()
    expires_at = EpochField(null=True)
