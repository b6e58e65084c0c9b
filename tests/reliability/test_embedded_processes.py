"""The embedded setup on every core: `wqbot serve --workers 2` on SQLite, two web processes sharing
one WAL database and one queue file, with the emulator (tests/reliability/cluster.py).

(a) exactly one process consumes the queue (uvicorn's supervisor), and a second consumer is refused;
    the work both web processes defer is done by it;
(b) one delivery sent to both processes at once is applied once;
(c) a web process killed mid-load loses no delivery: every callback answered 200 is stored, and
    WeCom's retries of the ones cut off are applied once; uvicorn starts a new process;
(d) (slow) the periodic sync runs once per interval.

SQLite only: on PostgreSQL + Redis the web processes and workers are separate commands
(test_scaled_out.py).
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, TEST_ENV
from tests.reliability.cluster import Cluster, Senders, envelope
from tests.reliability.test_scaled_out import wait_for

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="the embedded setup: SQLite store and queue")


def web_processes(supervisor: int) -> list[int]:
    """uvicorn's worker processes under `supervisor` (spawned: `multiprocessing.spawn`)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == supervisor and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return sorted(out)


def consumer_lock_holder() -> str | None:
    """What holds the embedded queue's consumer lock, as its file says; None when nothing holds it."""
    with open(TEST_ENV["QUEUE_URL"][len("sqlite:///") :] + ".consumer.lock", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip()
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return None


def key_of(plaintext: str, endpoint: str = "app") -> str:
    return endpoint[0] + hashlib.sha1(plaintext.encode()).hexdigest()


def stored(keys: set[str]) -> collections.Counter:
    from store.models import Delivery

    return collections.Counter(d.key for d in Delivery.select(Delivery.key).where(Delivery.key.in_(list(keys))))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, _database):
    if BACKEND != "sqlite":
        pytest.skip("the embedded setup: SQLite store and queue")
    from bot.queue import huey
    from tests.conftest import truncate_all

    truncate_all(_database)
    huey.immediate = False
    huey.storage.flush_all()
    with Cluster(tmp_path_factory.mktemp("embedded2"), webs=1, workers=0, web_processes=2, sim_users=40) as c:
        wait_for(lambda: len(web_processes(c.webs[0].popen.pid)) == 2, 30, "two web processes", c)
        yield c
    huey.storage.flush_all()


# -- (d) the periodic sync (first: the module's cluster below holds the queue once it starts) -----------
@pytest.mark.slow
def test_the_periodic_sync_runs_once_per_interval_on_two_web_processes(tmp_path, _database):
    """With SYNC_INTERVAL_MINUTES=1 and two web processes, 3 minutes of the real scheduler: one
    periodic run a minute (one scheduler, and the interval claimed in the store)."""
    from bot.queue import huey
    from store.directory import SyncRun
    from tests.conftest import truncate_all

    truncate_all(_database)
    huey.storage.flush_all()
    with Cluster(tmp_path, webs=1, workers=0, web_processes=2, env={"SYNC_INTERVAL_MINUTES": "1"}) as c:
        first = len(list(SyncRun.select()))
        time.sleep(185)
        runs = [r for r in SyncRun.select().order_by(SyncRun.id) if r.trigger == "periodic"][first:]
        per_minute = collections.Counter(int(r.started_at // 60) for r in runs)
        assert len(runs) >= 2, c.logs()
        assert max(per_minute.values()) == 1, [(r.id, r.started_at) for r in runs]


# -- (a) one consumer ---------------------------------------------------------------------------------
def test_exactly_one_process_consumes_the_queue(cluster):
    from store.models import Outbox

    supervisor = cluster.webs[0].popen.pid
    assert consumer_lock_holder() == f"wqbot serve, pid {supervisor}"
    assert supervisor not in web_processes(supervisor) and len(web_processes(supervisor)) == 2
    # a second consumer of the same queue file is refused, naming the one that holds it
    second = subprocess.run(
        [sys.executable, "-m", "tests.reliability.cluster", "worker"],
        cwd=cluster.workdir,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = second.stdout + second.stderr
    assert second.returncode == 2 and f"already consumed by wqbot serve, pid {supervisor}" in said, said
    # what the web processes defer (update_user → user/get), the consumer does; a fresh
    # connection each, so both processes take some
    s = Senders(cluster)
    members = cluster.member_ids()[:10]
    for i, uid in enumerate(members):
        with httpx.Client(timeout=15) as http:
            r = s.post_contacts(http, cluster.web_urls[0], s.change_contact("update_user", uid, f"多进程{i}"))
            assert r.status_code == 200, r.text
    wait_for(
        lambda: {c["params"].get("userid") for c in cluster.calls("user/get")} >= set(members),
        30,
        "user/get for every member",
        cluster,
    )
    wait_for(lambda: not Outbox.select().exists(), 30, "the outbox to drain", cluster)
    assert consumer_lock_holder() == f"wqbot serve, pid {supervisor}"


# -- (b) dedupe across processes ----------------------------------------------------------------------
def test_one_delivery_sent_to_both_processes_at_once_is_applied_once(cluster):
    from store.directory import Change

    s = Senders(cluster)
    uid = cluster.member_ids()[11]
    plaintext = s.change_contact("update_user", uid, "同时到达")
    start = threading.Barrier(16)
    answers: list = [None] * 16

    def send(i: int) -> None:
        params, body = envelope(s.contacts_crypto, plaintext, s.corp, "")  # re-encrypted, as WeCom retries
        with httpx.Client(timeout=15) as http:
            start.wait()
            answers[i] = http.post(f"{cluster.web_urls[0]}/wecom/contacts/callback", params=params, content=body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [a.status_code for a in answers] == [200] * 16
    assert stored({key_of(plaintext, "contacts")}) == {key_of(plaintext, "contacts"): 1}
    # the event's change, once (the user/get it deferred may add the directory's own view after it)
    assert Change.select().where((Change.ref == uid) & Change.data.contains("同时到达")).count() == 1


# -- (c) a web process killed under load --------------------------------------------------------------
def test_a_killed_web_process_loses_no_delivery(cluster):
    """Four senders post unique clicks, retrying what was cut off as WeCom does (the same
    plaintext, re-encrypted), while one web process is killed -9."""
    s = Senders(cluster)
    supervisor = cluster.webs[0].popen.pid
    victims = web_processes(supervisor)
    stop = threading.Event()
    sent: list[str] = []
    answered: list[str] = []
    retries = collections.Counter()
    lock = threading.Lock()

    def sender(n: int) -> None:
        i = 0
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                plaintext = (
                    f"<xml><ToUserName><![CDATA[{s.corp}]]></ToUserName><FromUserName><![CDATA[k{n}x{i}]]>"
                    f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                    f"<Event><![CDATA[click]]></Event><EventKey><![CDATA[help]]></EventKey>"
                    f"<AgentID>{s.agent}</AgentID></xml>"
                )
                i += 1
                with lock:
                    sent.append(plaintext)
                for attempt in range(20):
                    try:
                        r = s.post_app(http, cluster.web_urls[0], plaintext)
                    except httpx.TransportError:
                        r = None
                    if r is not None and r.status_code == 200:
                        with lock:
                            answered.append(plaintext)
                        break
                    with lock:
                        retries[n] += 1
                    time.sleep(0.05 * (attempt + 1))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    os.kill(victims[0], signal.SIGKILL)
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(60)
    assert len(answered) == len(sent) > 20, (len(answered), len(sent))
    counts = stored({key_of(p) for p in sent})
    assert len(counts) == len(sent) and set(counts.values()) == {1}
    # uvicorn replaced the killed process; the consumer is untouched
    wait_for(lambda: len(web_processes(supervisor)) == 2, 30, "a new web process", cluster)
    assert victims[0] not in web_processes(supervisor)
    assert consumer_lock_holder() == f"wqbot serve, pid {supervisor}"
