"""wqbot's store: peewee models on SQLite (embedded default) or PostgreSQL (scale-out).

    from store import db, models, init_store
    init_store("sqlite:///wqbot.db")     # connect + run pending migrations

`db` is a proxy bound by `init_store`; models are declared once, in `store.models`.
"""

import peewee

from .db import connect, db, write_transaction
from .migrations import migrate as _migrate

__all__ = ["connect", "db", "init_store", "write_transaction"]


def init_store(url: str, migrate: bool = True) -> peewee.Database:
    """Bind the proxy to DATABASE_URL and bring the schema up to date."""
    database = connect(url)
    db.initialize(database)
    if migrate:
        _migrate(database)
    return database
