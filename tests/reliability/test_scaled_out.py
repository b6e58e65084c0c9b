"""docs/reliability.md §3, "Scaled out": PostgreSQL + Redis, two `wqbot serve --no-worker` web processes and
two `wqbot worker` processes (tests/reliability/cluster.py), with nothing killed:

(a) the periodic sync runs once per SYNC_INTERVAL_MINUTES, not once per worker (each worker's
    scheduler enqueues it for the same due minute);
(b) the access token (and the JS-SDK tickets) are fetched once for all processes, and refreshed
    once for all after WeCom expires them;
(c) members tapping 同意 / 拒绝 on the same task at the same moment, through both web processes,
    get one decision, one webhook and one "you decided" answer;
(d) a reader polling /api/v1/org/changes with its cursor, while both web processes and both workers
    write to the feed, sees every change exactly once, in order, with no holes.

The cluster tests need the scaled-out backend (WQBOT_TEST_BACKEND=pg); the regression for (a) at
the bottom runs on both backends.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time

import httpx
import pytest

from tests.conftest import BACKEND, TEST_ENV
from tests.reliability.cluster import LONG, Cluster, Senders, card_of

scaled_out = pytest.mark.skipif(
    BACKEND != "pg", reason="the scaled-out setup runs on PostgreSQL + Redis (WQBOT_TEST_BACKEND=pg)"
)
AUTH = {"Authorization": f"Bearer {TEST_ENV['WEIQIAN_API_TOKEN']}"}
INTERVAL = 10  # SYNC_INTERVAL_MINUTES of the shared cluster: the product's default


def wait_for(predicate, timeout: float, what: str, cluster: Cluster | None = None, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{cluster.logs()}" if cluster else "")
            )
        time.sleep(every)


def publish(name: str, figures: dict) -> None:
    line = json.dumps({"scenario": name, **figures}, ensure_ascii=False, default=str)
    print(f"\nreliability §3 {line}")
    path = os.environ.get("WQBOT_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, _database):
    """One scaled-out cluster for the module; the store and queue are emptied before it starts."""
    if BACKEND != "pg":
        pytest.skip("the scaled-out setup runs on PostgreSQL + Redis (WQBOT_TEST_BACKEND=pg)")
    from bot.queue import huey
    from tests.conftest import truncate_all

    truncate_all(_database)
    huey.immediate = False
    huey.storage.flush_all()
    with Cluster(
        tmp_path_factory.mktemp("scaled"), webs=2, workers=2, sim_users=60, env={"SYNC_INTERVAL_MINUTES": str(INTERVAL)}
    ) as c:
        yield c
    huey.storage.flush_all()


def gettoken_calls(cluster: Cluster) -> collections.Counter:
    """gettoken calls by secret: the emulator logs the secret masked to its last two characters."""
    kinds = {
        "****" + TEST_ENV["WECOM_APP_SECRET"][-2:]: "app",
        "****" + TEST_ENV["WECOM_CONTACTS_SECRET"][-2:]: "contacts",
    }
    return collections.Counter(kinds.get(c["params"].get("corpsecret"), "?") for c in cluster.calls("gettoken"))


def push_approvals(cluster: Cluster, http, n: int, recipients: int, tag: str) -> list[dict]:
    """n approve notifications to `recipients` members each, through both web processes; waits
    until every card is delivered at the emulator."""
    s = Senders(cluster)
    members = cluster.member_ids()
    rng = random.Random(tag)
    out = []
    for i in range(n):
        nid, task = f"so-{tag}-{i}", f"SO-{tag}-{i}"
        who = rng.sample(members, recipients)
        r = s.post_notification(
            http,
            cluster.web_urls[i % 2],
            {"id": nid, "type": "approve", "task_id": task, "title": f"并发审批-{i}", "recipients": who},
        )
        assert r.status_code == 202, r.text
        out.append({"id": nid, "task_id": task, "recipients": who, "card": card_of(nid, task)})
    cards = cluster.sim.messaging.cards
    wait_for(
        lambda: all(t["card"] in cards and len(cards[t["card"]].copies) == recipients for t in out),
        60,
        "every card delivered",
        cluster,
    )
    return out


# -- regression (both backends; first, before the module's cluster starts) ---------------------------
def test_a_second_copy_of_the_periodic_sync_in_the_same_interval_does_not_sync_again(settings, store, monkeypatch):
    """Each worker's scheduler enqueues the periodic sync for the same due minute, at its own
    second. The lease only kept two copies from overlapping: a copy that started after the first
    had finished synced again (twice per interval with two workers, three times with three)."""
    import dataclasses

    import settings as settings_mod
    from bot.sync.tasks import reconcile
    from bot.wecom import reset_clients
    from store.directory import SyncRun
    from tests.sync.support import FakeWeCom

    s = dataclasses.replace(settings, sync_interval_minutes=10)
    monkeypatch.setattr(settings_mod, "_current", s)
    reset_clients()
    fake = FakeWeCom(s).standard()
    with fake.mounted():
        first = reconcile.call_local()
        assert first is not None and SyncRun.get_by_id(first).status == "ok"
        assert reconcile.call_local() is None  # the other worker's copy
        assert reconcile.call_local() is None  # a restarted worker's
    reset_clients()
    assert SyncRun.select().count() == 1
    assert fake.api_calls() == {"department/list": 1, "user/list": 1}
    # the claim is per interval: the next one runs again, an earlier one (a late copy) does not
    from bot.sync.tasks import claim_interval

    now = time.time()
    assert claim_interval(s, now + 600) and not claim_interval(s, now + 600) and not claim_interval(s, now)


# -- (a) the periodic sync: once per interval ---------------------------------------------------------------
@scaled_out
def test_the_periodic_sync_runs_once_per_interval_not_once_per_worker(cluster):
    """What two workers' schedulers do for one due minute, made deterministic: one copy of the
    periodic task runs to the end, then the other worker's copy (and a restarted worker's) arrives."""
    from bot.queue import enqueue, huey
    from bot.sync.tasks import reconcile
    from store.directory import SyncRun

    def periodic() -> list[SyncRun]:
        return list(SyncRun.select().where(SyncRun.trigger == "periodic").order_by(SyncRun.id))

    def interval(ts: float) -> int:
        return int(ts // 60) // INTERVAL

    def finished_this_interval() -> bool:
        now = interval(time.time())
        return any(interval(r.started_at) == now and r.status != "running" for r in periodic())

    before = len(periodic())
    # The first worker's copy. The cluster's own schedulers also enqueue it at every due minute:
    # if one got there first in this interval, that run is the interval's one and ours is skipped.
    enqueue(reconcile)
    wait_for(finished_this_interval, 60, "the interval's first periodic run to finish", cluster)
    enqueue(reconcile)  # the second worker's copy, a few seconds later
    enqueue(reconcile)  # a worker restarted within the same interval
    wait_for(lambda: huey.pending_count() == 0, 30, "the queue to drain", cluster)
    time.sleep(3)  # both copies are taken; let them finish
    runs = periodic()
    per_interval = collections.Counter(interval(r.started_at) for r in runs)
    skipped = sum(p.tail(200_000).count("periodic sync skipped") for p in cluster.workers)
    publish(
        "periodic sync, 2 workers",
        {"copies_enqueued": 3, "runs": len(runs) - before, "skipped": skipped, "runs_per_interval": dict(per_interval)},
    )
    assert max(per_interval.values()) == 1, [(r.id, r.started_at, r.status) for r in runs]
    assert all(r.status == "ok" for r in runs), [r.as_dict() for r in runs]
    assert skipped >= 2


# -- (b) one token for every process -----------------------------------------------------------------------
@scaled_out
def test_the_access_token_and_tickets_are_shared_by_every_process(cluster):
    """Both workers push and update cards (app token) and fetch members (app token); both web
    processes sign JS-SDK pages (tickets); `wqbot sync` read the directory (通讯录 token). One
    gettoken per secret for all of them; after WeCom expires the tokens, one more."""
    from store.notifications import WebhookDelivery

    s = Senders(cluster)
    with httpx.Client(timeout=15) as http:

        def work(tag: str):
            tasks = push_approvals(cluster, http, 6, 4, tag)
            for i, t in enumerate(tasks):  # decisions: card updates by the workers
                r = s.post_app(http, cluster.web_urls[i % 2], s.tap_plaintext(t["recipients"][0], t["card"], "approve"))
                assert r.status_code == 200
            for i, u in enumerate(cluster.member_ids()[:10]):  # user/get by the workers
                r = s.post_contacts(http, cluster.web_urls[i % 2], s.change_contact("update_user", u, f"改名{tag}{i}"))
                assert r.status_code == 200
            for url in cluster.web_urls * 3:
                r = http.post(f"{url}/api/v1/jssdk/signature", headers=AUTH, json={"url": f"{cluster.web_urls[0]}/h5/"})
                assert r.status_code == 200, r.text
            wait_for(
                lambda: (
                    _outbox_empty() and not WebhookDelivery.select().where(WebhookDelivery.status == "pending").exists()
                ),
                60,
                "the queued work to finish",
                cluster,
            )

        work("tok1")
        first = gettoken_calls(cluster)
        assert first["app"] == 1 and first["contacts"] <= 1 and not first["?"], first
        assert len(cluster.calls("get_jsapi_ticket")) == 1 and len(cluster.calls("ticket/get")) == 1

        expired = cluster.sim.expire_tokens(None)
        work("tok2")
        second = gettoken_calls(cluster)
        publish(
            "token shared, 2 web + 2 workers + wqbot sync",
            {
                "gettoken_app": second["app"],
                "gettoken_contacts": second["contacts"],
                "tokens_expired": expired,
                "message_send": len(cluster.calls("message/send")),
                "user_get": len(cluster.calls("user/get")),
                "jsapi_ticket": len(cluster.calls("get_jsapi_ticket")),
                "agent_ticket": len(cluster.calls("ticket/get")),
            },
        )
        assert second["app"] == 2, second  # one forced refresh for every process together
        assert second["contacts"] <= 1, second


def _outbox_empty() -> bool:
    from store.models import Outbox

    return not Outbox.select().exists()


# -- (c) concurrent taps -------------------------------------------------------------------------------------
@scaled_out
def test_concurrent_taps_through_both_web_processes_give_one_decision(cluster):
    from store.notifications import NotifyTask, WebhookDelivery

    s = Senders(cluster)
    tapping = 8
    with httpx.Client(timeout=20, limits=httpx.Limits(max_connections=200)) as http:
        tasks = push_approvals(cluster, http, 6 if not LONG else 30, tapping, "taps")
        plan = []
        for t in tasks:
            for j, u in enumerate(t["recipients"]):
                plan.append(
                    (
                        t,
                        u,
                        "approve" if j % 2 else "reject",
                        cluster.web_urls[j % 2],
                        s.tap_plaintext(u, t["card"], "approve" if j % 2 else "reject"),
                    )
                )
        gate = threading.Barrier(len(plan))
        answers: list[tuple[dict, str, str, httpx.Response | None]] = []
        lock = threading.Lock()

        def tap(t, u, key, url, plain):
            gate.wait()
            r = None
            for _ in range(3):
                try:
                    r = s.post_app(http, url, plain)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            with lock:
                answers.append((t, u, key, r))

        threads = [threading.Thread(target=tap, args=p) for p in plan]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    assert all(r is not None and r.status_code == 200 for *_, r in answers), [
        (u, r and r.status_code) for _, u, _, r in answers if r is None or r.status_code != 200
    ]
    wait_for(lambda: _outbox_empty(), 60, "card updates and webhooks", cluster)

    decided_by_me = {"已同意", "已拒绝"}
    by_task = collections.defaultdict(list)
    for t, u, key, r in answers:
        by_task[t["task_id"]].append((u, key, (s.reply_fields(r) or {}).get("Button", {}).get("ReplaceName")))
    received = collections.Counter(json.loads(d["raw"])["task_id"] for d in cluster.receiver.accepted())
    problems = []
    for t in tasks:
        row = NotifyTask.get(NotifyTask.task_id == t["task_id"])
        winners = [(u, key) for u, key, name in by_task[t["task_id"]] if name in decided_by_me]
        hooks = list(WebhookDelivery.select().where(WebhookDelivery.task_id == t["task_id"]))
        if row.state_via != "chat" or winners != [(row.decided_by, row.decided_action)]:
            problems.append((t["task_id"], row.state, row.decided_by, winners))
        if len(hooks) != 1 or hooks[0].status != "delivered" or received[t["task_id"]] != 1:
            problems.append((t["task_id"], [h.status for h in hooks], received[t["task_id"]]))
        copies = cluster.sim.messaging.cards[t["card"]].copies.values()
        stale = [c.userid for c in copies if c.state == "active" and c.userid != row.decided_by]
        if stale:
            problems.append((t["task_id"], "cards not updated", stale))
    publish(
        "concurrent taps, 2 web processes",
        {
            "tasks": len(tasks),
            "taps": len(answers),
            "tappers_per_task": tapping,
            "decisions": sum(
                1 for t in tasks if NotifyTask.get(NotifyTask.task_id == t["task_id"]).state_via == "chat"
            ),
            "webhooks_received": sum(received[t["task_id"]] for t in tasks),
            "problems": len(problems),
        },
    )
    assert not problems, problems


# -- (d) the change feed --------------------------------------------------------------------------------------
@scaled_out
def test_the_change_feed_has_no_gaps_under_concurrent_writers(cluster):
    """Writers: change_contact callbacks into both web processes (new members: user.created in
    the callback's transaction; known members with a stale name: the callback writes user.updated
    and the worker's user/get writes another), and a full `wqbot sync` of a directory whose names
    changed. The reader polls with `after` and a small page through both web processes."""
    from store.directory import Change

    s = Senders(cluster)
    sim = cluster.sim
    members = cluster.member_ids()
    for i, u in enumerate(members[20:50]):  # changed in WeCom without a callback: the full sync finds them
        sim.directory.update_user(u, {"name": f"同步改名{i}"})
    stop = threading.Event()
    seen: list[int] = []
    reader_error: list[str] = []

    def reader():
        cursor, i = 0, 0
        with httpx.Client(timeout=10) as http:
            while True:
                done = stop.is_set()
                r = http.get(
                    f"{cluster.web_urls[i % 2]}/api/v1/org/changes", params={"after": cursor, "limit": 25}, headers=AUTH
                )
                i += 1
                if r.status_code != 200:
                    reader_error.append(r.text)
                    return
                page = r.json()
                seen.extend(c["seq"] for c in page["changes"])
                cursor = page["next"]
                if done and not page["changes"]:
                    return
                if not page["changes"]:
                    time.sleep(0.005)

    def writer(k: int, count: int):
        with httpx.Client(timeout=10) as http:
            for j in range(count):
                if j % 3 == 0:
                    u, name = members[(k * 7 + j) % 20], f"回调改名{k}-{j}"  # known: callback + worker fetch
                else:
                    u, name = f"feed{k}x{j}", f"新成员{k}-{j}"
                plain = s.change_contact("update_user" if j % 3 == 0 else "create_user", u, name)
                r = s.post_contacts(http, cluster.web_urls[(k + j) % 2], plain)
                assert r.status_code == 200

    per_writer = 150 if LONG else 60
    threads = [threading.Thread(target=reader)] + [
        threading.Thread(target=writer, args=(k, per_writer)) for k in range(4)
    ]
    for th in threads:
        th.start()
    cluster.run_cli(["sync", "--full", "--force"])  # the sync's chunks interleave with the callbacks and fetches
    for th in threads[1:]:
        th.join(120)
    wait_for(lambda: _outbox_empty(), 60, "the workers' fetches", cluster)
    stop.set()
    threads[0].join(60)
    assert not reader_error, reader_error
    stored = [seq for (seq,) in Change.select(Change.seq).order_by(Change.seq).tuples()]
    kinds = collections.Counter(k for (k,) in Change.select(Change.kind).tuples())
    publish(
        "change feed, 2 web + 2 workers + wqbot sync",
        {
            "changes": len(stored),
            "seen_by_reader": len(seen),
            "kinds": dict(kinds),
            "duplicates": len(seen) - len(set(seen)),
            "missed": len(set(stored) - set(seen)),
        },
    )
    assert seen == sorted(set(seen)), "the reader saw a seq out of order or twice"
    assert seen == stored, f"missed {sorted(set(stored) - set(seen))[:20]}"
    assert stored == list(range(stored[0], stored[0] + len(stored))), "the feed has holes"
    assert kinds["user.updated"] >= 30 and kinds["user.created"] >= 100, kinds


@scaled_out
@pytest.mark.slow
def test_the_periodic_sync_runs_once_a_minute_on_two_real_schedulers(cluster):
    """The same with nothing driven by the test: both workers restarted with
    SYNC_INTERVAL_MINUTES=1, some seconds apart (so their schedulers tick at different seconds),
    and left to their own schedulers for a little over two minutes (three in the long run)."""
    from store.directory import SyncRun

    minutes = 3 if LONG else 2
    since = time.time()
    try:
        for w in cluster.workers:
            w.stop()
            w.env = {**w.env, "SYNC_INTERVAL_MINUTES": "1"}
            w.start()
            time.sleep(random.uniform(5, 20))
        time.sleep(minutes * 60 + 10)
        runs = list(SyncRun.select().where(SyncRun.trigger == "periodic", SyncRun.started_at >= since))
        per_minute = collections.Counter(int(r.started_at // 60) for r in runs)
        # since each worker's last start
        skipped = sum(
            p.tail(500_000).rsplit("==== start", 1)[-1].count("periodic sync skipped") for p in cluster.workers
        )
    finally:
        for w in cluster.workers:
            w.stop()
            w.env = {**w.env, "SYNC_INTERVAL_MINUTES": str(INTERVAL)}
            w.start()
    publish(
        "periodic sync, 2 workers, real schedulers",
        {"minutes": minutes, "runs": len(runs), "runs_per_minute": sorted(per_minute.values())},
    )
    assert len(runs) >= minutes and max(per_minute.values()) == 1, sorted(per_minute.items())
    assert skipped >= minutes - 1, cluster.logs()
