from __future__ import annotations

from urllib.parse import unquote, urlsplit

import peewee

db = peewee.DatabaseProxy()

# WAL lets readers run beside the one writer; NORMAL sync is durable across a process kill
# (only an OS crash can lose the last transactions), which is what "acknowledged" needs here.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 10000,
    "foreign_keys": 1,
    "cache_size": -32000,
    "temp_store": "memory",
}


def connect(url: str) -> peewee.Database:
    """A peewee Database for DATABASE_URL (not yet bound to the proxy)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):] or ":memory:"
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return peewee.PostgresqlDatabase(
            unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            autoconnect=True,
        )
    raise ValueError(f"DATABASE_URL: unsupported scheme {parts.scheme!r}")


def init_store(url: str, migrate: bool = True) -> peewee.Database:
    """Bind the proxy to DATABASE_URL and bring the schema up to date."""
    database = connect(url)
    db.initialize(database)
    if migrate:
        from .migrations import migrate as run

        run(database)
    return database


def is_postgres(database: peewee.Database | None = None) -> bool:
    d = database or db.obj
    return isinstance(d, peewee.PostgresqlDatabase)


def write_transaction(database: peewee.Database | None = None):
    """A transaction that will write. On SQLite it takes the write lock up front (BEGIN
    IMMEDIATE, waiting up to busy_timeout): a deferred transaction that reads and then writes
    fails at once with SQLITE_BUSY if another connection committed in between, and the busy
    timeout cannot help it. PostgreSQL needs nothing special. Nested, it is a savepoint."""
    d = database or db.obj
    if is_postgres(d) or d.in_transaction():
        return d.atomic()
    return d.atomic(lock_type="IMMEDIATE")
