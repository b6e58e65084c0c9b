"""Directory sync: WeCom departments and members into the store, kept current by the
live change_contact events (bot/handlers/contacts.py) and a periodic reconciliation.

For other capabilities:

    from bot.sync import resolve_recipients, link_account, apply_oauth_contact, run_sync

- `resolve_recipients(keys) -> (found: {key: userid}, unknown: [key])`: 微签 recipient keys
  (userids or linked account keys per SYNC_MATCH_FIELD) to active members' userids, in one query
  per 500 keys. Keys that match no active member, or several, are in `unknown`.
- `link_account(user_or_userid)`: recompute `User.account` from SYNC_MATCH_FIELD after the login
  stored a mobile/email; writes and records `user.updated` only when the key changed.
- `apply_oauth_contact(userid, mobile=…, email=…)`: store what the member disclosed through OAuth
  snsapi_privateinfo with source "oauth" (only where the directory gives nothing) and relink.
  Sync never overwrites an OAuth-sourced value with null.
- `run_sync(settings, trigger=, full=, force=, progress=)`: one reconciliation under the lease.

Modules: records.py (normalising + hashing), apply.py (one row, for events and fetch tasks),
fetch.py (the list / list_id modes), reconcile.py (bulk diff, guards, run record), lease.py
(one run at a time), tasks.py (huey: fetches and the periodic run), recipients.py, cli.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tasks
from .apply import apply_oauth_contact, link_account
from .recipients import resolve_recipients
from .reconcile import run_sync

if TYPE_CHECKING:
    from bot.registry import Registry

__all__ = ["apply_oauth_contact", "contribute", "link_account", "resolve_recipients", "run_sync"]


def contribute(app: Registry) -> None:
    """The fetches change_contact handlers defer (bot/handlers/contacts.py), and the periodic
    reconciliation. The org API is in bot/api/org.py."""
    app.tasks(tasks.fetch_user, tasks.fetch_department)
    app.periodic(tasks.reconcile)
