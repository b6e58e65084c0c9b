"""wqbot's store: peewee models on SQLite (embedded default) or PostgreSQL (scale-out).

    from store import db, models, init_store
    init_store("sqlite:///wqbot.db")     # connect + run pending migrations

`db` is a proxy bound by `init_store`; models are declared once, in `store.models`.
"""

from .db import connect, db, init_store, write_transaction

__all__ = ["connect", "db", "init_store", "write_transaction"]
