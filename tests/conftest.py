"""Test backends: WQBOT_TEST_BACKEND=sqlite (default: SQLite + huey SQLite) or
WQBOT_TEST_BACKEND=pg (PostgreSQL + Redis, the scale-out setup).

Each test session gets its own PostgreSQL database and its own huey queue name, so two runs
on one machine never see each other's rows or tasks; both are dropped at the end.
The environment is set here, before any wqbot module is imported, because the huey instance
is built from QUEUE_URL at import time.

Fixtures are shared one way, through conftest.py files: this one has what tests in several
folders use, a folder's own conftest.py what only its tests use. Helpers that are not fixtures
are plain modules: tests/support.py (signed callbacks, `CallbackClient`), tests/<folder>/support.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest

BACKEND = os.environ.get("WQBOT_TEST_BACKEND", "sqlite")
PG_ADMIN = os.environ.get("WQBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("WQBOT_TEST_REDIS", "redis://127.0.0.1:6379/0")
DATA = Path(__file__).resolve().parent / "data"

RUN_ID = secrets.token_hex(4)
TMP = Path(tempfile.mkdtemp(prefix=f"wqbot-test-{RUN_ID}-"))

# The own-V set of tests/data/wecom_vectors.json: a Token/EncodingAESKey/CorpID triple tests can sign with.
TEST_ENV = {
    "WECOM_CORP_ID": "ww1a2b3c4d5e6f7a8b",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_APP_SECRET": "app-secret-DO-NOT-LOG-7f3a9c",
    "WECOM_CONTACTS_SECRET": "contacts-secret-DO-NOT-LOG-51be",
    "WECOM_TOKEN": "T0kenForDocTests",
    "WECOM_AES_KEY": "AvluMXaJSmrivhqi8EPrQGiww9Wp/2BN50/kzaCNN/Q",
    "WECOM_CONTACTS_TOKEN": "ContactsT0ken",
    "WECOM_CONTACTS_AES_KEY": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    "SECRET_KEY": "test-secret-key-DO-NOT-LOG-9d1e",
    "WEIQIAN_API_TOKEN": "weiqian-api-token-DO-NOT-LOG-33aa",
    "WECOM_API_BASE": "http://wecom.test",
    "PUBLIC_URL": "https://wqbot.example.com",
    "H5_URL": "https://sign.example.com/h5/#/pages/login/login_pro",
    "PC_URL": "https://sign.example.com/pc/",
}


def _pg_create() -> str:
    import psycopg2

    name = f"wqbot_t_{RUN_ID}"
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def _pg_drop(url: str) -> None:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


if BACKEND == "pg":
    DATABASE_URL = _pg_create()
    QUEUE_URL = REDIS_URL
elif BACKEND == "sqlite":
    DATABASE_URL = f"sqlite:///{TMP / 'wqbot.db'}"
    QUEUE_URL = f"sqlite:///{TMP / 'queue.db'}"
else:
    raise SystemExit(f"WQBOT_TEST_BACKEND must be sqlite or pg, not {BACKEND!r}")

TEST_ENV.update(DATABASE_URL=DATABASE_URL, QUEUE_URL=QUEUE_URL)
os.environ.update(TEST_ENV)
os.environ["WQBOT_QUEUE_NAME"] = f"wqbot-test-{RUN_ID}"


def pytest_report_header(config):
    return f"wqbot backend: {BACKEND} (store {DATABASE_URL.split('@')[-1]}, queue {QUEUE_URL.split('@')[-1]})"


def pytest_sessionfinish(session, exitstatus):
    from store import db

    try:
        if not db.obj.is_closed():
            db.obj.close()
    except Exception:
        pass
    if BACKEND == "pg":
        _pg_drop(DATABASE_URL)
        try:
            from bot.queue import huey

            huey.storage.flush_all()
        except Exception:
            pass
    shutil.rmtree(TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def base_settings():
    import settings as settings_mod

    s = settings_mod.load(env=dict(TEST_ENV), dotenv=None)
    settings_mod.override(s)
    return s


@pytest.fixture(scope="session")
def _database(base_settings):
    from store import init_store

    return init_store(DATABASE_URL)


def truncate_all(database) -> None:
    from store.models import Model, SchemaMigration

    def all_models(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from all_models(sub)

    tables = [m for m in set(all_models(Model)) if m is not SchemaMigration and m.table_exists()]
    if BACKEND == "pg":
        names = ", ".join(f'"{m._meta.table_name}"' for m in tables)
        if names:
            database.execute_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    else:
        with database.atomic():
            database.execute_sql("PRAGMA defer_foreign_keys = ON")
            for m in tables:
                m.delete().execute()


def forget_shared_wecom_state() -> None:
    """Scaled out, WeCom tokens, shared gettoken failures and the rate limiter's buckets live in
    Redis under the deployment's name (this run's queue name), beside the store: a refused secret
    one test provoked must not be what the next test's processes read."""
    if BACKEND != "pg":
        return  # embedded, they live in the store, which truncate_all empties
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{os.environ['WQBOT_QUEUE_NAME']}:wecom:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def store(_database):
    """A migrated, empty store for each test, and no WeCom state shared from an earlier one."""
    truncate_all(_database)
    forget_shared_wecom_state()
    yield _database


@pytest.fixture
def settings(base_settings):
    return base_settings


@pytest.fixture(scope="session")
def registered(base_settings):
    """Every capability's queue tasks and periodic jobs registered with huey, as in a worker."""
    from bot.app import build

    return build(base_settings)


@pytest.fixture
def queue(registered):
    """The huey instance with its storage emptied; tasks run only when the test says so."""
    from bot.queue import huey

    huey.immediate = False
    huey.storage.flush_all()
    yield huey
    huey.storage.flush_all()


@pytest.fixture
def immediate_queue(registered):
    """huey in immediate mode: a task runs when it is enqueued (deterministic)."""
    from bot.queue import huey

    huey.immediate = True
    yield huey
    huey.immediate = False


@pytest.fixture
def app(settings, store):
    from bot.app import create_app

    return create_app(settings, init_store=False)


@pytest.fixture
def client(settings, app):
    """The app behind the stack `wqbot serve` runs, with WeCom's side of the callback URLs
    (tests/support.py `CallbackClient`)."""
    from bot.server import stack
    from tests.support import CallbackClient

    with CallbackClient(settings, stack(app)) as c:
        yield c


@pytest.fixture(scope="session")
def vectors():
    """The known-answer vectors; a missing or unreadable file fails the tests that need it."""
    return json.loads((DATA / "wecom_vectors.json").read_text(encoding="utf-8"))


class PinnedClock:
    """What `store.clock.now()` answers while the `clock` fixture is active: a fixed instant
    that only the test moves."""

    def __init__(self, at: float):
        self.at = float(at)

    def __call__(self) -> float:
        return self.at

    def set(self, at: float) -> None:
        self.at = float(at)

    def advance(self, seconds: float) -> None:
        self.at += seconds


@pytest.fixture
def clock(monkeypatch):
    """Pins the one clock wqbot reads (`store.clock.now`), at the real time the test starts, so
    relative times ("now + 7 days") still mean what they say. Tests that need a particular
    instant (a 00:00 China-time boundary) call `clock.set(...)`."""
    from store import clock as store_clock

    pinned = PinnedClock(time.time())
    monkeypatch.setattr(store_clock, "_source", pinned)
    return pinned


# -- WeCom's message API and 微签's webhook receiver, for the notification tests and those that
# create notifications on their way (chat, reliability); see tests/notify/support.py


@pytest.fixture
def fake_wecom():
    """message/send and update_template_card faked with respx, every call recorded."""
    import respx

    from bot.wecom import reset_clients
    from tests.notify.support import FakeWeCom

    reset_clients()
    with respx.mock(assert_all_called=False) as mock:
        yield FakeWeCom(mock)
    reset_clients()


@pytest.fixture
def webhook_receiver():
    """微签's webhook receiver, for real on 127.0.0.1: verifies the signature as 微签 would."""
    from tests.notify.support import Receiver

    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hook_settings(settings, webhook_receiver):
    """Settings with WEIQIAN_WEBHOOK_URL pointing at the receiver; `get_settings()` returns them."""
    import settings as settings_mod
    from tests.notify.support import WEBHOOK_SECRET

    s = settings_mod.load(
        env={**TEST_ENV, "WEIQIAN_WEBHOOK_URL": webhook_receiver.url, "WEIQIAN_WEBHOOK_SECRET": WEBHOOK_SECRET},
        dotenv=None,
    )
    settings_mod.override(s)
    yield s
    settings_mod.override(settings)
