"""The login tables' upkeep: states and tickets that expired are deleted on a schedule, not by a
chance on the request path (where an anonymous flood could outrun it)."""

from __future__ import annotations

from huey import crontab

from bot.queue import periodic_job
from store import login as login_store

# Kept an hour past expiry, so a late replay is told "used" or "expired" rather than "unknown".
KEEP_EXPIRED = 3600


@periodic_job("wqbot.auth.purge_logins", crontab(minute="*/5"))
def purge_logins() -> int:
    return login_store.purge_expired(older_than=KEEP_EXPIRED)
