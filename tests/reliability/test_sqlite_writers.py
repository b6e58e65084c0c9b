"""SQLite writers of one process take turns (store.db.write_transaction).

Found by bench/soak.py: on the embedded setup, a full sync of 100,000 members commits chunk after
chunk on the worker thread, and SQLite's busy wait (sleep, retry) let it keep the write lock
throughout; the callback commits on the event loop waited until busy_timeout and WeCom's 5 s
deadline had long passed. Runs on its own SQLite file whatever WQBOT_TEST_BACKEND is."""

from __future__ import annotations

import threading
import time

from store.db import connect, write_transaction


def test_a_writer_is_not_starved_by_back_to_back_transactions(tmp_path):
    database = connect(f"sqlite:///{tmp_path / 'writers.db'}")
    database.execute_sql("CREATE TABLE w (who TEXT)")
    stop = threading.Event()
    hog_commits = 0

    def hog():
        """A sync's shape: one chunk after another, each holding the write lock for a while."""
        nonlocal hog_commits
        while not stop.is_set():
            with write_transaction(database):
                database.execute_sql("INSERT INTO w VALUES ('hog')")
                time.sleep(0.02)
            hog_commits += 1

    t = threading.Thread(target=hog)
    t.start()
    try:
        while hog_commits < 3:
            time.sleep(0.005)
        # without the queue this connection would wait out the whole busy timeout and fail
        database.execute_sql("PRAGMA busy_timeout = 3000")
        for _ in range(20):
            with write_transaction(database):
                database.execute_sql("INSERT INTO w VALUES ('callback')")
    finally:
        stop.set()
        t.join()
    rows = dict(database.execute_sql("SELECT who, count(*) FROM w GROUP BY who").fetchall())
    assert rows["callback"] == 20
    assert rows["hog"] == hog_commits >= 3
    database.close()


def test_nested_write_transaction_is_a_savepoint_not_a_second_place_in_line(tmp_path):
    """Re-entering on the thread that holds the queue must not wait for itself."""
    database = connect(f"sqlite:///{tmp_path / 'nested.db'}")
    database.execute_sql("CREATE TABLE w (x INTEGER)")
    with write_transaction(database):
        database.execute_sql("INSERT INTO w VALUES (1)")
        with write_transaction(database):
            database.execute_sql("INSERT INTO w VALUES (2)")
    assert database.execute_sql("SELECT count(*) FROM w").fetchone()[0] == 2
    database.close()
