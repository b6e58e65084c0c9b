"""The change feed under concurrent writers: a reader polling `after=seq` never skips a row that
commits later (each thread has its own connection)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from store import db
from store.db import is_postgres
from store.directory import Change, record_change
from tests.conftest import BACKEND


def poll(after: int) -> list[int]:
    return [c.seq for c in Change.select(Change.seq).where(Change.seq > after).order_by(Change.seq)]


def in_thread(fn, *args):
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # surfaced by the test
            out["error"] = e
        finally:
            db.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_a_later_writer_waits_for_the_earlier_one_to_commit(store):
    """A holds seq n uncommitted; B cannot take n+1 and commit before A, so a reader that polls in
    between sees neither, and afterwards sees both, in order."""
    allocated, release = threading.Event(), threading.Event()

    def writer_a():
        with db.atomic():
            seq = record_change("user.updated", "a", {})
            allocated.set()
            release.wait(10)
        return seq

    def writer_b():
        with db.atomic():
            return record_change("user.updated", "b", {})

    ta, ra = in_thread(writer_a)
    assert allocated.wait(10)
    tb, rb = in_thread(writer_b)
    time.sleep(0.3)
    assert tb.is_alive(), "B committed while A still held an earlier seq"
    assert poll(0) == []
    release.set()
    ta.join(10), tb.join(10)
    assert "error" not in ra and "error" not in rb, (ra, rb)
    assert (ra["value"], rb["value"]) == (1, 2)
    assert poll(0) == [1, 2]


@pytest.mark.skipif(BACKEND != "pg", reason="the negative control needs PostgreSQL sequences")
def test_the_property_catches_a_naive_allocator(store, monkeypatch):
    """Control: seqs from a plain sequence (nextval) let B commit before A, and the reader skips A."""
    import store.directory as d

    db.execute_sql("CREATE SEQUENCE IF NOT EXISTS naive_feed_seq")
    db.execute_sql("ALTER SEQUENCE naive_feed_seq RESTART WITH 1")
    monkeypatch.setattr(
        d,
        "_allocate",
        lambda n: db.execute_sql(
            "SELECT setval('naive_feed_seq', nextval('naive_feed_seq') + %s - 1)", (n,)
        ).fetchone()[0],
    )
    allocated, release = threading.Event(), threading.Event()

    def writer_a():
        with db.atomic():
            record_change("user.updated", "a", {})
            allocated.set()
            release.wait(10)

    def writer_b():
        with db.atomic():
            record_change("user.updated", "b", {})

    ta, _ = in_thread(writer_a)
    allocated.wait(10)
    tb, _ = in_thread(writer_b)
    tb.join(10)
    seen = poll(0)
    assert seen == [2]  # B is visible before A
    release.set()
    ta.join(10)
    assert poll(seen[-1]) == []  # …and a reader that moved on to after=2 never gets seq 1
    db.execute_sql("DROP SEQUENCE naive_feed_seq")


def test_concurrent_writers_and_a_polling_reader_see_every_seq(store):
    writers, per_writer = 4, 40
    stop = threading.Event()
    got: list[int] = []
    batches_ok = [True]

    def write(w):
        rnd = random.Random(w)
        for i in range(per_writer):
            with db.atomic():
                n = rnd.choice((1, 1, 2, 3))
                for j in range(n):
                    record_change("user.updated", f"w{w}-{i}-{j}", {"w": w})
                time.sleep(rnd.random() * 0.003)  # hold the transaction open a little
        return per_writer

    def read():
        after = 0
        while True:
            done = stop.is_set()
            rows = poll(after)
            if rows:
                if rows[0] != after + 1 or rows != list(range(rows[0], rows[0] + len(rows))):
                    batches_ok[0] = False
                got.extend(rows)
                after = rows[-1]
            elif done:
                return after
            time.sleep(0.001)

    tr, rr = in_thread(read)
    threads = [in_thread(write, w) for w in range(writers)]
    for t, r in threads:
        t.join(60)
        assert "error" not in r, r
    stop.set()
    tr.join(30)
    assert "error" not in rr, rr
    total = Change.select().count()
    assert batches_ok[0], "a poll returned a batch with a hole"
    assert got == list(range(1, total + 1))
    assert total >= writers * per_writer
    if is_postgres():
        assert (
            db.execute_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone()[0]
            >= 1
        )
