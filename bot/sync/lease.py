"""One reconciliation at a time, across every worker, process and `wqbot sync`.

A lease row in the store (`sync_state`, key "lease") with a holder and an expiry. Taking it is a
single conditional UPDATE, so two racers cannot both win on SQLite or PostgreSQL. The holder
renews it while it works; a holder that dies lets it lapse after `TTL` seconds. huey's own
`lock_task` cannot be renewed: a TTL long enough for a slow `list_id` run would block the sync
for that long after a crash, and without a TTL a killed worker would block it for good.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import peewee as pw

from store import clock
from store.db import write_transaction
from store.directory import SyncState

KEY = "lease"
TTL = 300.0


class Busy(Exception):
    def __init__(self, holder: str | None, since: float | None):
        self.holder, self.since = holder, since
        when = time.strftime("%H:%M:%S", time.localtime(since)) if since else "?"
        super().__init__(f"another directory sync is running (holder {holder}, since {when})")


class LeaseLost(Exception):
    pass


class Lease:
    def __init__(self, ttl: float = TTL):
        self.ttl = ttl
        self.holder = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.renewed_at = 0.0

    def acquire(self) -> "Lease":
        now = clock.now()
        with write_transaction():
            SyncState.insert(key=KEY, value="", expires_at=0.0).on_conflict_ignore().execute()
            won = (
                SyncState.update(holder=self.holder, expires_at=now + self.ttl, value=str(now), updated_at=now)
                .where(
                    (SyncState.key == KEY)
                    & (SyncState.holder.is_null() | (SyncState.expires_at < now) | (SyncState.holder == self.holder))
                )
                .execute()
            )
        if not won:
            row = SyncState.get_or_none(SyncState.key == KEY)
            raise Busy(row.holder if row else None, float(row.value) if row and row.value else None)
        self.renewed_at = now
        return self

    def renew(self, force: bool = False) -> None:
        now = clock.now()
        if not force and now - self.renewed_at < self.ttl / 5:
            return
        with write_transaction():
            n = (
                SyncState.update(expires_at=now + self.ttl, updated_at=now)
                .where((SyncState.key == KEY) & (SyncState.holder == self.holder))
                .execute()
            )
        if not n:
            raise LeaseLost("the sync lease lapsed and another run took it; this run stops")
        self.renewed_at = now

    def release(self) -> None:
        try:
            with write_transaction():
                (
                    SyncState.update(holder=None, expires_at=0.0, updated_at=clock.now())
                    .where((SyncState.key == KEY) & (SyncState.holder == self.holder))
                    .execute()
                )
        except pw.PeeweeException:
            pass  # it lapses by itself

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
