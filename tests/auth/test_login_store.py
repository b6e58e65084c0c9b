"""store/login.py: the state record (one flow, one browser, one use, an expiry)."""

from __future__ import annotations

import re
import threading

import pytest

from store import login as login_store

KEY = "k"


def test_state_is_alphanumeric_and_within_wecoms_limit(store):
    for _ in range(20):
        s = login_store.create_state(KEY, "h5", None, "browser1")
        assert re.fullmatch(r"[A-Za-z0-9]+", s) and len(s.encode()) <= 128 and len(s) >= 32


def test_state_binds_flow_next_and_browser(store):
    s = login_store.create_state(KEY, "pc", "/tasks/1", "browser1")
    with pytest.raises(login_store.StateRefused) as e:
        login_store.consume_state(KEY, s, "h5", "browser1")
    assert e.value.reason == "wrong_flow"
    with pytest.raises(login_store.StateRefused) as e:
        login_store.consume_state(KEY, s, "pc", "browser2")
    assert e.value.reason == "wrong_browser"
    with pytest.raises(login_store.StateRefused) as e:
        login_store.consume_state(KEY, s, "pc", None)
    assert e.value.reason == "wrong_browser"
    rec = login_store.consume_state(KEY, s, "pc", "browser1")
    assert (rec.flow, rec.next_path) == ("pc", "/tasks/1")
    with pytest.raises(login_store.StateRefused) as e:
        login_store.consume_state(KEY, s, "pc", "browser1")
    assert e.value.reason == "used"


def test_expired_and_unknown_states(store):
    s = login_store.create_state(KEY, "h5", None, "b", ttl=-1)
    with pytest.raises(login_store.StateRefused) as e:
        login_store.consume_state(KEY, s, "h5", "b")
    assert e.value.reason == "expired"
    for forged in ("", "nope", "a.b", "x" * 200, "é"):
        with pytest.raises(login_store.StateRefused) as e:
            login_store.consume_state(KEY, forged, "h5", "b")
        assert e.value.reason == "unknown"


def test_racing_callbacks_use_a_state_once(store):
    s = login_store.create_state(KEY, "h5", None, "b")
    barrier = threading.Barrier(6)
    out: list = []

    def race():
        barrier.wait()
        try:
            login_store.consume_state(KEY, s, "h5", "b")
            out.append("won")
        except login_store.StateRefused as e:
            out.append(e.reason)

    threads = [threading.Thread(target=race) for _ in range(6)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert sorted(out) == ["used"] * 5 + ["won"]


def test_purge_keeps_recent_rows(store):
    login_store.create_state(KEY, "h5", None, "b")
    old = login_store.create_state(KEY, "h5", None, "b", ttl=-100000)
    login_store.issue_ticket(KEY, "u", "h5", ttl=-100000)
    assert login_store.purge_expired() == 2
    assert login_store.OAuthState.select().count() == 1
    with pytest.raises(login_store.StateRefused):
        login_store.consume_state(KEY, old, "h5", "b")
