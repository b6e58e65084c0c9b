"""Token sharing: single flight across threads, clients and OS processes; stale tokens; failures
shared briefly; a shared cache that is down."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.wecom import BadCredentials, WeComClient
from bot.wecom._tokens import Entry, LocalTokenStore, RedisBackend, SQLBackend
from tests.conftest import DATABASE_URL, REDIS_URL, TEST_ENV

from .conftest import BASE, redis_or_skip

ROOT = Path(__file__).resolve().parents[2]


def expired(value="TOKEN-OLD") -> Entry:
    return Entry.fresh(value, 7200, 300, now=time.time() - 7300)


def run_threads(n, fn):
    gate = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        gate.wait()
        try:
            results[i] = fn(i)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    return results


@pytest.fixture
def shared_factory(shared_backend):
    """New backend objects over the same shared place (as each process would have its own)."""
    if isinstance(shared_backend, RedisBackend):
        import redis

        return lambda: RedisBackend(redis.Redis.from_url(REDIS_URL), shared_backend.ns)
    return lambda: SQLBackend(DATABASE_URL)


# -- within one process ---------------------------------------------------------------------------------
def test_50_threads_over_an_expired_token_cause_one_gettoken(make_client, wecom):
    wecom.gettoken_delay = 0.2
    route = wecom.api("GET", "/cgi-bin/agent/get", {"agentid": 1000002})
    c = make_client()
    c.tokens._entries[c._cache_key("app")] = expired()
    results = run_threads(50, lambda i: c.agent_get()["agentid"])
    assert results == [1000002] * 50
    assert wecom.gettoken_calls == 1 and route.call_count == 50


def test_50_threads_over_clients_sharing_a_backend_cause_one_gettoken(make_client, wecom, shared_factory):
    """5 clients (as 5 processes would be) × 10 threads, each client with its own backend object."""
    wecom.gettoken_delay = 0.3
    wecom.api("GET", "/cgi-bin/agent/get", {"agentid": 1000002})
    clients = [make_client(tokens=LocalTokenStore(shared_factory())) for _ in range(5)]
    clients[0].tokens.shared.write(clients[0]._cache_key("app"), expired())
    results = run_threads(50, lambda i: clients[i % 5].agent_get()["agentid"])
    assert results == [1000002] * 50
    assert wecom.gettoken_calls == 1


def test_a_token_replaced_elsewhere_is_not_fetched_again(make_client, wecom, shared_factory):
    route = wecom.api("GET", "/cgi-bin/agent/get", {"agentid": 1})
    a = make_client(tokens=LocalTokenStore(shared_factory()))
    b = make_client(tokens=LocalTokenStore(shared_factory()))
    a.agent_get()
    b.agent_get()
    assert wecom.gettoken_calls == 1
    wecom.token = "TOKEN-2"  # WeCom dropped TOKEN-1 early
    a.agent_get()  # 42001 → drops TOKEN-1 (still the shared one) → one gettoken
    b.agent_get()  # 42001 → TOKEN-1 is no longer the shared one: takes TOKEN-2, no gettoken
    assert wecom.gettoken_calls == 2 and route.call_count == 6


def test_refresh_ahead_of_expiry_makes_one_caller_wait_and_no_one_else():
    store = LocalTokenStore()
    now = time.time()
    store._entries["k"] = Entry("OLD", now - 7000, now + 200, now - 100, now + 170)  # due for renewal, still good
    fetches = []

    def fetch():
        fetches.append(1)
        time.sleep(0.3)
        return "NEW", 7200

    def get(i):
        t0 = time.monotonic()
        return store.get_or_fetch("k", fetch), time.monotonic() - t0

    results = run_threads(20, get)
    assert len(fetches) == 1
    old = [d for v, d in results if v == "OLD"]
    assert len(old) == 19 and max(old) < 0.25  # the others kept the current token without waiting
    assert store.get_or_fetch("k", fetch) == "NEW"


def test_refresh_ahead_across_backends_lets_others_keep_the_current_token(shared_factory):
    now = time.time()
    a, b = LocalTokenStore(shared_factory()), LocalTokenStore(shared_factory())
    a.shared.write("wecom:token:x", Entry("OLD", now - 7000, now + 200, now - 100, now + 170))
    started, fetches = threading.Event(), []

    def slow_fetch():
        fetches.append(1)
        started.set()
        time.sleep(0.4)
        return "NEW", 7200

    t = threading.Thread(target=lambda: a.get_or_fetch("wecom:token:x", slow_fetch))
    t.start()
    started.wait(5)
    t0 = time.monotonic()
    assert b.get_or_fetch("wecom:token:x", slow_fetch) == "OLD" and time.monotonic() - t0 < 0.3
    t.join()
    assert len(fetches) == 1
    c = LocalTokenStore(shared_factory())
    assert c.get_or_fetch("wecom:token:x", slow_fetch) == "NEW" and len(fetches) == 1


def test_a_short_expires_in_does_not_renew_on_every_call():
    e = Entry.fresh("T", 250, 300, now=1000.0)  # WeCom returned the same token with little time left
    assert e.refresh_at == 1060.0 and e.use_until > e.refresh_at
    e = Entry.fresh("T", 7200, 300, now=1000.0)
    assert e.refresh_at == 1000.0 + 7200 - 300 and e.use_until == 1000.0 + 7200 - 30
    assert "T" not in repr(e)


# -- failures ------------------------------------------------------------------------------------------------
def test_a_refused_gettoken_is_shared_and_not_repeated(make_client, shared_factory):
    import respx

    with respx.mock() as router:
        route = router.get(f"{BASE}/cgi-bin/gettoken").respond(json={"errcode": 40001, "errmsg": "invalid credential"})
        a = make_client(tokens=LocalTokenStore(shared_factory()))
        b = make_client(tokens=LocalTokenStore(shared_factory()))
        with pytest.raises(BadCredentials):
            a.agent_get()
        with pytest.raises(BadCredentials):
            a.agent_get()  # remembered here
        with pytest.raises(BadCredentials) as e:
            b.agent_get()  # and by every other process
        assert route.call_count == 1 and "WECOM_APP_SECRET" in e.value.hint


def test_waiting_threads_share_the_leaders_failure(make_client):
    import httpx
    import respx

    def refuse(request):
        time.sleep(0.2)
        return httpx.Response(200, json={"errcode": 40013, "errmsg": "invalid corpid"})

    with respx.mock() as router:
        route = router.get(f"{BASE}/cgi-bin/gettoken").mock(side_effect=refuse)
        c = make_client()
        failures = []

        def call(i):
            try:
                c.agent_get()
            except BadCredentials as e:
                failures.append(e)

        run_threads(20, call)
    assert len(failures) == 20 and route.call_count == 1


def test_shared_cache_down_falls_back_to_the_process_and_logs_once(make_client, wecom, caplog):
    import redis

    dead = RedisBackend(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), "nowhere")
    wecom.api("GET", "/cgi-bin/agent/get", {"agentid": 1})
    c = make_client(tokens=LocalTokenStore(dead))
    caplog.set_level(logging.INFO, logger="wqbot.wecom")
    results = run_threads(20, lambda i: c.agent_get()["agentid"])
    for _ in range(5):
        c.agent_get()
    wecom.token = "TOKEN-2"
    c.agent_get()  # a token error while down: refreshed locally, once
    assert results == [1] * 20 and wecom.gettoken_calls == 2
    warnings = [r for r in caplog.records if "shared token cache unavailable" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_store_without_the_table_falls_back(make_client, wecom, tmp_path, caplog):
    wecom.api("GET", "/cgi-bin/agent/get", {"agentid": 1})
    c = make_client(tokens=LocalTokenStore(SQLBackend(f"sqlite:///{tmp_path / 'empty.db'}")))
    assert c.agent_get() == {"agentid": 1} and c.agent_get() == {"agentid": 1}
    assert wecom.gettoken_calls == 1
    assert any("shared token cache unavailable" in r.getMessage() for r in caplog.records)


def test_a_callers_open_transaction_neither_holds_nor_stalls_the_token(
    make_client, wecom, store, shared_factory, caplog
):
    """The store backend uses its own connections: a rollback in the caller keeps the shared token,
    and on SQLite (one writer) a renewal inside the caller's write transaction does not wait for
    the lock the caller itself holds."""
    from store.db import db, is_postgres
    from store.models import KeyValue

    a = make_client(tokens=LocalTokenStore(shared_factory()))
    t0 = time.monotonic()
    with pytest.raises(RuntimeError):
        with db.atomic():
            KeyValue.create(key="caller-row", value="x")
            assert a.token() == "TOKEN-1"
            raise RuntimeError("the caller rolls back")
    assert time.monotonic() - t0 < 1.0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    b = make_client(tokens=LocalTokenStore(shared_factory()))
    assert b.token() == "TOKEN-1"
    sqlite_store = isinstance(a.tokens.shared, SQLBackend) and not is_postgres()
    assert wecom.gettoken_calls == (2 if sqlite_store else 1)


# -- across OS processes --------------------------------------------------------------------------------------
def spawn(args, env):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.wecom.proc", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_together(procs, timeout=60):
    for p in procs:
        line = p.stdout.readline()
        assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


@pytest.mark.parametrize("shared", ["redis", "store"])
def test_two_processes_over_an_expired_token_cause_one_gettoken(settings, store, namespace, counting_wecom, shared):
    env = {
        **os.environ,
        **TEST_ENV,
        "WECOM_API_BASE": counting_wecom.base,
        "WQBOT_QUEUE_NAME": namespace,
        "DATABASE_URL": DATABASE_URL,
    }
    if shared == "redis":
        r = redis_or_skip()
        env["QUEUE_URL"] = REDIS_URL
        backend = RedisBackend(r, namespace)
    else:
        env["QUEUE_URL"] = "memory://"  # not Redis: the client shares tokens through the store
        backend = SQLBackend(DATABASE_URL)
    key = WeComClient(settings)._cache_key("app")
    backend.write(key, expired())
    outs = run_together([spawn(["tokens", "25"], env), spawn(["tokens", "25"], env)])
    assert [o["errors"] for o in outs] == [[], []]
    assert sum(o["ok"] for o in outs) == 50
    assert counting_wecom.gettoken_calls == 1
    assert counting_wecom.api_calls == 50


def test_a_remembered_failure_is_raised_afresh_each_time():
    import traceback

    store = LocalTokenStore()
    calls = []

    def refuse():
        calls.append(1)
        from bot.wecom._errors import from_response

        raise from_response(40013, "invalid corpid", "/cgi-bin/gettoken", gettoken=True)

    seen = []
    for _ in range(30):
        with pytest.raises(BadCredentials) as e:
            store.get_or_fetch("k", refuse)
        seen.append(e.value)
    assert len(calls) == 1
    assert len(traceback.extract_tb(seen[-1].__traceback__)) <= len(traceback.extract_tb(seen[1].__traceback__))
    assert seen[-1].errcode == 40013 and "WECOM_CORP_ID" in seen[-1].hint
