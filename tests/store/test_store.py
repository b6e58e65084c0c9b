"""The store's shared mechanisms."""

from __future__ import annotations

import threading

import pytest

from store import write_transaction
from store.models import Delivery
from tests.conftest import BACKEND


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's deferred-transaction upgrade is what this guards")
def test_read_then_write_survives_a_concurrent_writer(store):
    """A deferred SQLite transaction that reads, sees another connection commit, then writes,
    fails at once with "database is locked". write_transaction() takes the lock up front, so the
    other writer waits instead and both commit."""
    read_done, other_done = threading.Event(), threading.Event()
    errors = []

    def other_writer():
        read_done.wait(5)
        try:
            Delivery.insert(key="other", kind="test").execute()  # this thread's own connection
        except Exception as e:  # pragma: no cover - the failure this test exists to catch
            errors.append(e)
        finally:
            store.close()
            other_done.set()

    t = threading.Thread(target=other_writer)
    t.start()
    with write_transaction():
        assert Delivery.select().count() == 0
        read_done.set()
        other_done.wait(0.5)  # the other writer is blocked on our lock, not committing past us
        Delivery.insert(key="mine", kind="test").execute()
    t.join(10)
    assert not errors
    assert {d.key for d in Delivery.select()} == {"mine", "other"}


def test_nested_write_transaction_is_a_savepoint(store):
    with write_transaction():
        Delivery.insert(key="outer", kind="test").execute()
        try:
            with write_transaction():
                Delivery.insert(key="inner", kind="test").execute()
                raise RuntimeError
        except RuntimeError:
            pass
    assert [d.key for d in Delivery.select()] == ["outer"]
