"""Group commit in /wecom/callback: deliveries that arrive together share one transaction, and
every guarantee of a lone delivery still holds for each of them: 200 only after its own commit,
a retry or a twin applied once, a failing handler failing only its own delivery."""

from __future__ import annotations

import hashlib

from bot.callback import CallbackEndpoint, replies
from bot.callback.router import Router
from bot.callback.xml import parse
from bot.queue import OutboxTask, defer
from store.models import Delivery, Outbox
from tests.conftest import BACKEND, DATABASE_URL
from tests.support import CallbackClient, app_crypto, click, serving

# deferred work the tests look for in the outbox; never registered, so never run
NOOP = OutboxTask("test.noop", lambda **kwargs: None)


def committed_keys() -> set[str]:
    """Delivery keys visible to another connection, i.e. committed."""
    if BACKEND == "pg":
        import psycopg2

        conn = psycopg2.connect(DATABASE_URL)
        try:
            cur = conn.cursor()
            cur.execute("SELECT key FROM delivery")
            return {r[0] for r in cur.fetchall()}
        finally:
            conn.close()
    import sqlite3

    conn = sqlite3.connect(DATABASE_URL[len("sqlite:///") :])
    try:
        return {r[0] for r in conn.execute("SELECT key FROM delivery")}
    finally:
        conn.close()


def key_of(plaintext: str) -> str:
    return "a" + hashlib.sha1(plaintext.encode()).hexdigest()


def wecom(settings, router) -> CallbackClient:
    """WeCom's side of an app with only `router` at the callback URL, behind the stack `wqbot serve`
    runs; `together()` sends deliveries at once, so they form groups."""
    return CallbackClient(settings, serving(CallbackEndpoint(app_crypto(settings), router, settings, "app")))


def test_many_at_once_each_applied_and_answered_after_its_commit(settings, store):
    router = Router()
    calls = []

    @router.event("click", key="who")
    def who(msg, ctx):
        calls.append(msg.sender)
        defer(NOOP, user=msg.sender)
        return replies.text(f"你好 {msg.sender}")

    wx = wecom(settings, router)
    plains = [click("who", user=f"user{i}") for i in range(40)]
    answered_after_commit = []
    requests = [wx.sign(p) for p in plains]
    results = wx.together(requests, on_start=lambda: answered_after_commit.append(committed_keys()))
    assert [status for status, _ in results] == [200] * 40
    for i, (_, body) in enumerate(results):
        assert wx.reply_of(body)["Content"] == f"你好 user{i}"
    assert sorted(calls) == sorted(f"user{i}" for i in range(40))
    assert Delivery.select().count() == 40 and Outbox.select().count() == 40
    # each response started only when its delivery key was already committed
    assert len(answered_after_commit) == 40
    all_keys = {key_of(p) for p in plains}
    assert all(seen & all_keys for seen in answered_after_commit)
    assert set.union(*answered_after_commit) == all_keys


def test_twins_and_retries_in_one_group_are_applied_once(settings, store):
    router = Router()
    calls = []

    @router.event("click", key="count")
    def count(msg, ctx):
        calls.append(msg.sender)
        defer(NOOP, user=msg.sender)
        return replies.text(f"第{len(calls)}次 {msg.sender}")

    wx = wecom(settings, router)
    earlier = click("count", user="old", CreateTime=1700000000)
    assert wx.together([wx.sign(earlier)])[0][0] == 200
    first_reply = Delivery.get(Delivery.key == key_of(earlier)).reply
    twin = click("count", user="twin", CreateTime=1700000001)
    fresh = [click("count", user=f"new{i}", CreateTime=1700000002) for i in range(5)]
    # WeCom re-encrypts a retry: same plaintext, new ciphertext and signature
    batch = [
        wx.sign(earlier),
        wx.sign(twin),
        *map(wx.sign, fresh),
        wx.sign(twin),
        wx.sign(earlier),
    ]
    results = wx.together(batch)
    assert [s for s, _ in results] == [200] * len(batch)
    contents = [wx.reply_of(body)["Content"] for _, body in results]
    assert contents[0] == contents[-1] == parse(first_reply)["Content"]  # the stored answer again
    assert contents[1] == contents[-2]  # twins share one outcome
    # Each delivery's effects are committed once. (A handler may run again for a retry, as it did
    # before group commit; its second run is rolled back.)
    import json

    users = sorted(json.loads(r.payload)["user"] for r in Outbox.select())
    assert users == sorted(["old", "twin"] + [f"new{i}" for i in range(5)])
    assert Delivery.select().count() == 7


def test_a_failing_handler_fails_only_its_own_delivery(settings, store):
    router = Router()

    @router.event("click", key="maybe")
    def maybe(msg, ctx):
        defer(NOOP, user=msg.sender)
        if msg.sender == "bad":
            raise RuntimeError("boom")
        return replies.text("ok " + msg.sender)

    wx = wecom(settings, router)
    users = ["a", "b", "bad", "c", "d"]
    plains = [click("maybe", user=u) for u in users]
    results = wx.together([wx.sign(p) for p in plains])
    assert [s for s, _ in results] == [200, 200, 500, 200, 200]
    assert "retried" in results[2][1]
    assert committed_keys() == {key_of(p) for u, p in zip(users, plains, strict=True) if u != "bad"}
    assert Outbox.select().count() == 4  # the failed delivery's deferred work was rolled back
    # WeCom retries the failed one later; once the handler works it is applied
    assert wx.together([wx.sign(click("maybe", user="fine"))])[0][0] == 200


def test_a_handlers_nested_transaction_joins_the_delivery_and_is_undone_with_it(settings, store):
    """A handler's own write_transaction opens no savepoint inside a delivery (its failure undoes
    the whole delivery anyway), and what it wrote before failing is rolled back with the rest."""
    from store import write_transaction
    from tests.support import count_queries

    router = Router()

    @router.event("click", key="nested")
    def nested(msg, ctx):
        with write_transaction():
            Outbox.insert(task="test.noop", payload="{}").execute()
        if msg.sender == "bad":
            raise RuntimeError("boom")
        return replies.text("ok " + msg.sender)

    wx = wecom(settings, router)
    with count_queries() as q:
        results = wx.together([wx.sign(click("nested", user=u)) for u in ("a", "bad", "b")])
    assert [s for s, _ in results] == [200, 500, 200]
    assert Outbox.select().count() == 2  # the failed delivery's row went with it
    assert not [sql for sql in q.statements if "SAVEPOINT" in sql.upper()]
    with write_transaction():  # outside a delivery, nesting still makes a savepoint
        with count_queries() as q, write_transaction():
            pass
    assert [sql for sql in q.statements if "SAVEPOINT" in sql.upper()]


def test_a_handler_breaking_a_constraint_fails_alone(settings, store):
    """A store error inside the group (not a duplicate delivery) is the handler's own failure."""
    router = Router()

    @router.event("click", key="clash")
    def clash(msg, ctx):
        if msg.sender == "clasher":  # a row whose key collides with an existing delivery
            Delivery.insert(key="x" * 41, kind="k").execute()
        return replies.text("ok")

    Delivery.insert(key="x" * 41, kind="k").execute()
    wx = wecom(settings, router)
    results = wx.together([wx.sign(click("clash", user=u)) for u in ("p", "clasher", "q")])
    assert [s for s, _ in results] == [200, 500, 200]
    assert Delivery.select().count() == 3  # the pre-existing row, p and q


def test_store_thread_reconnects_after_losing_postgres(settings, store):
    """PostgreSQL restarted (or the connection dropped): a callback may fail once (WeCom retries
    it), then callbacks are applied again without restarting wqbot."""
    import pytest

    if BACKEND != "pg":
        pytest.skip("PostgreSQL only: SQLite has no connection to lose")
    from store import db

    router = Router()

    @router.event("click", key="ping")
    def ping(msg, ctx):
        return replies.text("pong")

    wx = wecom(settings, router)
    assert wx.together([wx.sign(click("ping", user="before"))])[0][0] == 200
    own = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    db.execute_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s",
        (own,),
    )
    statuses = [wx.together([wx.sign(click("ping", user=f"after{i}"))])[0][0] for i in range(3)]
    assert statuses[1:] == [200, 200] and statuses[0] in (200, 500)


def test_sqlite_without_returning_records_row_by_row(settings, store, monkeypatch):
    """SQLite older than 3.35 has no RETURNING: each key is its own statement, same outcome."""
    import pytest

    from bot.callback import deliveries

    if BACKEND != "sqlite":
        pytest.skip("SQLite only")
    from tests.conftest import truncate_all

    monkeypatch.setattr(deliveries, "SQLITE_RETURNING", False)
    test_twins_and_retries_in_one_group_are_applied_once(settings, store)
    truncate_all(store)
    test_a_failing_handler_fails_only_its_own_delivery(settings, store)


def test_what_a_group_deferred_is_queued_in_one_write_after_its_commit(settings, store, queue, monkeypatch):
    """The outbox rows a group of deliveries deferred reach the queue together, in one storage
    write (not one write transaction or round trip each), in order, each naming its row."""
    from bot.queue import register_task

    seen = []
    queued_task = OutboxTask("test.group_enqueue", lambda **kwargs: seen.append(kwargs))
    register_task(queued_task)
    router = Router()

    @router.event("click", key="defer")
    def on_click(msg, ctx):
        defer(queued_task, user=msg.sender)
        defer(queued_task, user=msg.sender + "-2")

    single_writes = []
    monkeypatch.setattr(queue.storage, "enqueue", lambda *a, **k: single_writes.append(a))
    wx = wecom(settings, router)
    results = wx.together([wx.sign(click("defer", user=f"u{i}")) for i in range(10)])
    assert [status for status, _ in results] == [200] * 10
    assert single_writes == []  # every row went in a batch
    assert queue.pending_count() == 20 == Outbox.select().count()
    messages = [queue.dequeue() for _ in range(20)]
    outbox_ids = [m.args[0] for m in messages]
    assert sorted(outbox_ids) == sorted(r.id for r in Outbox.select())
    for m in messages:
        queue.execute(m)
    assert sorted(s["user"] for s in seen) == sorted([f"u{i}" for i in range(10)] + [f"u{i}-2" for i in range(10)])
    assert Outbox.select().count() == 0  # each run deleted its row
