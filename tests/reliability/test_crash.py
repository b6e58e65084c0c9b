"""docs/reliability.md §1, "Acknowledged means durable": steady traffic into real wqbot processes while
they are killed with SIGKILL and restarted; afterwards everything that was acknowledged happened,
exactly once.

Setups (tests/reliability/cluster.py): WQBOT_TEST_BACKEND=sqlite runs the EMBEDDED one (one
`wqbot serve`: SQLite store, huey SQLite queue, the consumer in the same process; a kill takes
the web server and the worker down together); WQBOT_TEST_BACKEND=pg runs the SCALED-OUT one
(PostgreSQL + Redis, two `wqbot serve --no-worker`, two `wqbot worker`; a kill takes down a web
process, a worker, or one of each at the same moment).

Traffic, from client threads, each request retried as its sender would (WeCom re-sends a callback
with the same plaintext, 微签 re-posts a notification with the same id) and recorded as
acknowledged only if an answer came back 200 / 202:
- change_contact create_user / update_user callbacks for new members (通讯录同步 key);
- POST /api/v1/notifications (approve cards, 3 recipients each);
- taps on the delivered cards (同意 / 拒绝, sometimes two members at once), through the app callback.

Afterwards (the sweepers do the recovery: in the short run they are triggered every few seconds
with second-scale thresholds, in the long run they run on their own once a minute):
- every acknowledged callback's member is in the store, and its user.created is in the feed once;
- every acknowledged notification was sent to each recipient by exactly one accepted message/send
  (counted at the emulator; WeCom's duplicate check is not what saves us);
- every acknowledged tap decided its task; every decision has one webhook delivery, received by
  微签; every other recipient's card was updated.
A message/send or a webhook seen twice fails the test unless a task-running process was killed
within a second or two after the first one: that is the window the design leaves open (WeCom or
微签 accepted, the process died before recording it) and closes with WeCom's duplicate check and
the X-Wqbot-Delivery id. Such duplicates are counted and reported, not hidden.
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

from tests.conftest import BACKEND
from tests.notify import support as ns
from tests.reliability.cluster import LONG, Chaos, Cluster, Senders, card_of, killed_near
from tests.support import CallbackClient

SETUP = "embedded" if BACKEND == "sqlite" else "scaled-out"
WINDOW = 3.0  # seconds after a send / webhook within which a kill explains seeing it twice
RETRIES = 6


class Traffic:
    """The client threads and what each request got."""

    def __init__(self, cluster: Cluster, seed: int, contacts_rate: float, notify_rate: float):
        self.c = cluster
        self.s = Senders(cluster)
        self.rng = random.Random(seed)
        self.run_id = f"{seed:x}"
        self.contacts_rate, self.notify_rate = contacts_rate, notify_rate
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.members = cluster.member_ids()
        # outcome per item: True acknowledged, False never acknowledged
        self.contacts: dict[str, dict] = {}
        self.notifications: dict[str, dict] = {}
        self.taps: list[dict] = []
        self.requests = collections.Counter()
        self.latencies: list[float] = []
        self._tap_queue: collections.deque = collections.deque()
        self.threads = [
            threading.Thread(target=self._guard(f), daemon=True, name=f.__name__)
            for f in (self._contacts, self._notifications, self._taps)
        ]
        self.errors: list[str] = []

    def _guard(self, fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 — reported by the test
                self.errors.append(f"{fn.__name__}: {type(e).__name__}: {e}")

        run.__name__ = fn.__name__
        return run

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _send(self, http, what: str, fn, ok=(200,)):
        """fn(web_url) → response; retried like WeCom / 微签 would. Returns the last response or None."""
        for attempt in range(RETRIES):
            url = self.rng.choice(self.c.web_urls)
            self.requests[what] += 1
            t0 = time.perf_counter()
            try:
                r = fn(url)
            except httpx.TransportError:
                r = None
            else:
                if r.status_code in ok:
                    self.latencies.append(time.perf_counter() - t0)
                    return r
                if r.status_code < 500:
                    return r  # a 4xx is an answer: the request was refused, not lost
            time.sleep(0.3 + 0.2 * attempt)
        return r

    def _pace(self, rate: float, started: float, n: int) -> None:
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)

    def _contacts(self):
        with httpx.Client(timeout=10) as http:
            started, i = time.monotonic(), 0
            while not self.stop.is_set():
                userid = f"rel{self.run_id}c{i:05d}"
                kind = "create_user" if i % 2 == 0 else "update_user"
                plain = self.s.change_contact(kind, userid, f"可靠{i}")
                r = self._send(http, "contacts", lambda url, p=plain: self.s.post_contacts(http, url, p))
                self.contacts[userid] = {
                    "kind": kind,
                    "name": f"可靠{i}",
                    "acked": r is not None and r.status_code == 200,
                    "status": None if r is None else r.status_code,
                }
                i += 1
                self._pace(self.contacts_rate, started, i)

    def _notifications(self):
        with httpx.Client(timeout=10) as http:
            started, i = time.monotonic(), 0
            while not self.stop.is_set():
                nid = f"rel-{self.run_id}-{i:05d}"
                task = f"RT-{self.run_id}-{i:05d}"
                recipients = self.rng.sample(self.members, 3)
                body = {
                    "id": nid,
                    "type": "approve",
                    "task_id": task,
                    "title": f"可靠性合同-{i}",
                    "description": "测试 发起了审批，请处理",
                    "initiator": self.members[0],
                    "recipients": recipients,
                    "url": f"/pages/task/task_detail?id={task}",
                }
                r = self._send(
                    http, "notifications", lambda url, b=body: self.s.post_notification(http, url, b), ok=(200, 202)
                )
                acked = r is not None and r.status_code in (200, 202)
                self.notifications[nid] = {
                    "task_id": task,
                    "recipients": recipients,
                    "acked": acked,
                    "status": None if r is None else r.status_code,
                }
                if acked:
                    self._tap_queue.append(nid)
                i += 1
                self._pace(self.notify_rate, started, i)

    def _taps(self):
        """Tap each acknowledged notification's card once it is delivered; a third of them get a
        second tapper at the same moment (the other button), who must lose."""
        cards = self.c.sim.messaging.cards
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                if not self._tap_queue:
                    self.stop.wait(0.05)
                    continue
                nid = self._tap_queue.popleft()
                n = self.notifications[nid]
                card = card_of(nid, n["task_id"])
                delivered = cards.get(card)
                if delivered is None or len(delivered.copies) < len(n["recipients"]):
                    self._tap_queue.append(nid)  # not pushed yet (worker down?): later
                    self.stop.wait(0.05)
                    continue
                who = self.rng.sample(n["recipients"], 2 if self.rng.random() < 0.33 else 1)
                keys = self.rng.sample(["approve", "reject"], len(who))
                threads = [
                    threading.Thread(target=self._tap_one, args=(http, nid, card, u, k))
                    for u, k in zip(who, keys, strict=True)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

    def _tap_one(self, http, nid: str, card: str, userid: str, key: str):
        plain = self.s.tap_plaintext(userid, card, key)
        r = self._send(http, "taps", lambda url: self.s.post_app(http, url, plain))
        with self.lock:
            self.taps.append(
                {
                    "notification": nid,
                    "card": card,
                    "userid": userid,
                    "key": key,
                    "acked": r is not None and r.status_code == 200,
                    "reply": self.s.reply_fields(r) if r is not None else None,
                }
            )


# -- after the chaos --------------------------------------------------------------------------------
def trigger_sweeps() -> None:
    """Enqueue the periodic sweeps now (the workers run them), instead of waiting for the minute."""
    from bot.notify.sweep import sweep
    from bot.queue import enqueue, sweep_outbox

    enqueue(sweep_outbox)
    enqueue(sweep)


def outstanding(traffic: Traffic) -> dict:
    """What the store still owes: queued work, unsent notifications, undelivered webhooks."""
    from store.models import Outbox
    from store.notifications import Notification, WebhookDelivery

    acked = [nid for nid, n in traffic.notifications.items() if n["acked"]]
    unsent = (
        Notification.select().where(Notification.id.in_(acked), Notification.status.in_(("queued", "sending"))).count()
        if acked
        else 0
    )
    return {
        "outbox": Outbox.select().count(),
        "unsent": unsent,
        "webhooks": WebhookDelivery.select().where(WebhookDelivery.status == "pending").count(),
    }


def settle(cluster: Cluster, traffic: Traffic, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last_trigger = 0.0
    while True:
        left = outstanding(traffic)
        if not any(left.values()):
            return left
        if time.monotonic() > deadline:
            return left
        if cluster.fast_sweeps and time.monotonic() - last_trigger > 3:
            trigger_sweeps()
            last_trigger = time.monotonic()
        time.sleep(0.5)


def sends_per_recipient(cluster: Cluster) -> dict[tuple[str, str], list[float]]:
    """(card task_id, userid) → times of the message/send calls WeCom accepted for it."""
    out: dict[tuple[str, str], list[tuple[float, float]]] = collections.defaultdict(list)
    for call in cluster.calls("message/send"):
        body = call["body"] or {}
        assert "touser" in body, f"the emulator truncated a message/send body: {call}"
        if call["errcode"] != 0:
            continue
        card = (body.get("template_card") or {}).get("task_id")
        for u in body["touser"].split("|"):
            out[(card, u)].append(
                (
                    call["at"],
                    call["at"] + (call["ms"] or 0) / 1000,
                    json.dumps(body, sort_keys=True, ensure_ascii=False),
                )
            )
    return out


def check(cluster: Cluster, traffic: Traffic, kills: list[tuple[float, str]]) -> dict:
    from store.directory import Change, User
    from store.notifications import Notification, NotifyRecipient, NotifyTask, WebhookDelivery

    runners = {p.name for p in cluster.task_runners}
    problems: list[str] = []
    report: dict = {
        "setup": SETUP,
        "scale": "long" if LONG else "short",
        "kills": collections.Counter(n for _, n in kills),
        "requests": dict(traffic.requests),
    }

    # -- callbacks -----------------------------------------------------------------------------------
    acked = {u: c for u, c in traffic.contacts.items() if c["acked"]}
    users = (
        {u.userid: u for u in User.select().where(User.userid.in_(list(traffic.contacts)))} if traffic.contacts else {}
    )
    created = (
        collections.Counter(
            ref
            for (ref,) in Change.select(Change.ref)
            .where(Change.kind == "user.created", Change.ref.in_(list(traffic.contacts)))
            .tuples()
        )
        if traffic.contacts
        else {}
    )
    lost = [u for u, c in acked.items() if u not in users or users[u].name != c["name"] or created[u] != 1]
    doubled = [u for u, k in created.items() if k > 1]
    report["callbacks"] = {
        "sent": len(traffic.contacts),
        "acknowledged": len(acked),
        "applied": sum(1 for u in acked if u in users and created[u] == 1),
        "applied_unacknowledged": sum(1 for u in traffic.contacts if u in users and u not in acked),
        "duplicates": len(doubled),
        "lost": len(lost),
    }
    if lost:
        problems.append(f"acknowledged callbacks without their effect: {lost[:10]}")
    if doubled:
        problems.append(f"callbacks applied twice (user.created more than once): {doubled[:10]}")

    # -- notifications and pushes ------------------------------------------------------------------
    acked_n = {nid: n for nid, n in traffic.notifications.items() if n["acked"]}
    stored = (
        {n.id: n for n in Notification.select().where(Notification.id.in_(list(traffic.notifications)))}
        if traffic.notifications
        else {}
    )
    sends = sends_per_recipient(cluster)
    pushes_expected = pushes_lost = 0
    explained, unexplained = [], []
    for nid, n in acked_n.items():
        card = card_of(nid, n["task_id"])
        if nid not in stored:
            problems.append(f"acknowledged notification {nid} is not in the store")
            continue
        for u in n["recipients"]:
            pushes_expected += 1
            times = sorted(sends.get((card, u), []))
            if not times:
                pushes_lost += 1
                problems.append(f"notification {nid}: {u} never got a message/send")
            for first, again in zip(times, times[1:], strict=False):
                (explained if killed_near(kills, runners, first[0], first[1], WINDOW) else unexplained).append(
                    (nid, u, round(again[0] - first[0], 1), first[2] == again[2])
                )
        rows = list(NotifyRecipient.select().where(NotifyRecipient.notification == nid))
        statuses = {r.userid: r.status for r in rows}
        if statuses != {u: "sent" for u in n["recipients"]}:
            reasons = sorted({r.reason for r in rows if r.reason})
            problems.append(f"notification {nid}: recipients {statuses}" + (f" because {reasons}" if reasons else ""))
    extra_sends = sum(len(t) - 1 for t in sends.values() if len(t) > 1)
    report["notifications"] = {
        "sent": len(traffic.notifications),
        "acknowledged": len(acked_n),
        "stored_unacknowledged": sum(1 for nid in stored if nid not in acked_n),
        "pushes_expected": pushes_expected,
        "pushes_lost": pushes_lost,
        "duplicate_sends": extra_sends,
        "duplicate_sends_in_kill_window": len(explained),
        "duplicate_sends_unexplained": len(unexplained),
        # byte-identical to the first: WeCom's duplicate check answers with the first result and
        # delivers nothing (the emulator does the same); the member holds one card
        "duplicate_sends_identical": sum(1 for *_, same in explained + unexplained if same),
        "duplicate_sends_sample": (explained + unexplained)[:3],
    }
    if unexplained:
        problems.append(f"message/send repeated with no kill in the {WINDOW} s after the first: {unexplained[:5]}")
    if any(not same for *_, same in explained):
        problems.append(
            f"a cut-off batch was sent again with a different body (the duplicate check cannot "
            f"catch it): {[e for e in explained if not e[-1]][:5]}"
        )

    # -- taps, decisions, webhooks, card updates -------------------------------------------------------
    tasks = (
        {
            t.task_id: t
            for t in NotifyTask.select().where(NotifyTask.task_id.in_([n["task_id"] for n in acked_n.values()]))
        }
        if acked_n
        else {}
    )
    acked_taps = [t for t in traffic.taps if t["acked"]]
    undecided = [t for t in acked_taps if tasks[traffic.notifications[t["notification"]]["task_id"]].state == "pending"]
    if undecided:
        problems.append(f"acknowledged taps whose task is still pending: {undecided[:5]}")
    decided = {tid: t for tid, t in tasks.items() if t.state_via == "chat"}
    deliveries = collections.defaultdict(list)
    for d in WebhookDelivery.select():
        deliveries[d.task_id].append(d)
    received = collections.defaultdict(list)
    for d in cluster.receiver.accepted():
        received[d["headers"].get("X-Wqbot-Delivery")].append((d["started"], d["at"]))
    hooks_lost, hook_dups_explained, hook_dups_unexplained = [], [], []
    for tid in decided:
        rows = deliveries.get(tid, [])
        if len(rows) != 1:
            problems.append(f"task {tid} decided once but owes {len(rows)} webhooks")
            continue
        d = rows[0]
        got = sorted(received.get(d.id, []))
        if d.status != "delivered" or not got:
            hooks_lost.append((tid, d.status, len(got)))
        # 微签 answering 2xx to an attempt and seeing another can only follow a worker dying before
        # it recorded the delivery (the attempt row and the delivered status come after the 2xx)
        for first, again in zip(got, got[1:], strict=False):
            (hook_dups_explained if killed_near(kills, runners, *first, WINDOW) else hook_dups_unexplained).append(
                (tid, d.id, first, again)
            )
    stray = set(received) - {d.id for rows in deliveries.values() for d in rows}
    if stray:
        problems.append(f"微签 received deliveries wqbot never recorded: {sorted(stray)[:5]}")
    if hooks_lost:
        problems.append(f"decisions whose webhook was not delivered: {hooks_lost[:5]}")
    if hook_dups_unexplained:
        problems.append(f"webhooks delivered twice with no kill in the {WINDOW} s after: {hook_dups_unexplained[:5]}")
    stale_cards = []
    for tid, t in decided.items():
        card = cluster.sim.messaging.cards.get(card_of(t.decided_notification, tid))
        if card is None:
            continue
        stale = [c.userid for c in card.copies.values() if c.state == "active" and c.userid != t.decided_by]
        if stale:
            stale_cards.append((tid, stale))
    if stale_cards:
        problems.append(f"decided tasks with cards still showing the buttons: {stale_cards[:5]}")
    winners = collections.Counter()
    for t in acked_taps:
        reply = t["reply"] or {}
        name = (reply.get("Button") or {}).get("ReplaceName") if isinstance(reply.get("Button"), dict) else None
        if name in ("已同意", "已拒绝"):
            winners[t["notification"]] += 1
    report["decisions"] = {
        "taps_sent": len(traffic.taps),
        "taps_acknowledged": len(acked_taps),
        "taps_lost": len(undecided),
        "decided": len(decided),
        "webhooks_delivered": sum(1 for rows in deliveries.values() for d in rows if d.status == "delivered"),
        "webhooks_lost": len(hooks_lost),
        "webhook_duplicates_in_kill_window": len(hook_dups_explained),
        "webhook_duplicates_unexplained": len(hook_dups_unexplained),
        "cards_not_updated": len(stale_cards),
    }
    report["recovery"] = recovered(cluster)
    lat = sorted(traffic.latencies)
    if lat:
        report["latency_ms"] = {
            "p50": round(lat[len(lat) // 2] * 1000, 1),
            "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
        }
    report["problems"] = problems
    return report


def recovered(cluster: Cluster) -> dict:
    """What the sweepers picked up (from the task runners' logs): outbox rows whose queue entry
    was lost or late, pushes and webhooks whose worker died."""
    import re

    text = "".join(p.tail(50_000_000) for p in cluster.task_runners)
    out = {"outbox_rows_requeued": sum(int(n) for n in re.findall(r"re-enqueued (\d+) outbox rows", text))}
    for key in ("pushes", "webhooks"):
        out[f"{key}_requeued"] = sum(
            int(n) for n in re.findall(rf'"msg": "notification sweep"[^\n]*"{key}": (\d+)', text)
        )
    return out


def publish(report: dict) -> None:
    line = json.dumps(report, ensure_ascii=False, default=str)
    print(f"\nreliability §1 {SETUP}: {line}")
    path = os.environ.get("WQBOT_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def test_killed_processes_lose_and_duplicate_nothing_acknowledged(tmp_path, store, queue):
    seed = random.randrange(1 << 30)
    embedded = BACKEND == "sqlite"
    if LONG:
        rounds, up, settle_for = 30, (5.0, 15.0), 900.0
    else:
        rounds, up, settle_for = (3 if embedded else 4), (4.0, 8.0), 120.0
    # WeCom and 微签 answer slowly enough that a kill usually finds calls in flight (the emulator
    # waits before it acts: a send cut off there was never made and must be made by the recovery)
    slow = {"message/send": 150, "message/update_template_card": 80, "user/get": 30}
    with Cluster(
        tmp_path, webs=1 if embedded else 2, workers=0 if embedded else 2, latency_ms=slow, receiver_delay=0.08
    ) as cluster:
        traffic = Traffic(cluster, seed, contacts_rate=10.0, notify_rate=3.0)
        chaos = Chaos(cluster, rounds=rounds, up=up, seed=seed)
        if not embedded:
            # each web process and each worker is killed about as often (3 of each in the short run)
            plan = []
            while len(plan) < rounds:
                block = ["web", "worker", "both", "both"]
                chaos.rng.shuffle(block)
                plan += block
            chaos.targets = lambda: {
                "web": [chaos.rng.choice(cluster.webs)],
                "worker": [chaos.rng.choice(cluster.workers)],
                "both": [chaos.rng.choice(cluster.webs), chaos.rng.choice(cluster.workers)],
            }[plan.pop(0)]
        traffic.start()
        chaos.start()
        chaos.join()
        time.sleep(2)  # traffic against the last restarted process
        traffic.finish()
        assert chaos.error is None, f"chaos failed: {chaos.error!r}\n{cluster.logs()}"
        assert not traffic.errors, traffic.errors
        left = settle(cluster, traffic, settle_for)
        report = check(cluster, traffic, chaos.kills())
        report["seed"], report["left_after_settle"] = seed, left
        publish(report)
        assert len(chaos.kills()) >= rounds, chaos.events
        assert report["callbacks"]["acknowledged"] >= 100 and report["notifications"]["acknowledged"] >= 30, report
        assert report["decisions"]["decided"] >= 10, report
        assert not any(left.values()), f"still outstanding after {settle_for:.0f} s: {left}\n{cluster.logs()}"
        assert not report["problems"], f"{report['problems']}\nseed {seed}\n{cluster.logs()}"


# -- regressions for what the chaos found ---------------------------------------------------------------


class Killed(BaseException):
    """Stands for SIGKILL at one exact line: nothing after it runs, no handler catches it."""


def test_a_push_cut_off_after_wecom_accepted_it_is_settled_when_the_task_was_decided_meanwhile(
    hook_settings, store, queue, fake_wecom, webhook_receiver, monkeypatch
):
    """The worker died between WeCom accepting a batch and recording it; restarted, a member
    tapped the card they did get and decided the task; then the push ran again. It used to call the
    batch failed (the task was over) — the status said nobody got the card, and the others' cards
    kept their buttons. Now the batch is sent again byte for byte (WeCom's duplicate check answers
    with the first result) and its cards are updated like every other card of the task."""
    from bot.notify import push
    from bot.queue import enqueue
    from store.notifications import Notification, NotifyCard, NotifyRecipient, NotifyTask

    for u, name in (("lisi", "李四"), ("wangwu", "王五"), ("zhaoliu", "赵六")):
        ns.add_member(u, name)
    with CallbackClient(hook_settings) as c:
        r = c.post(
            "/api/v1/notifications", json=ns.notification(recipients=["lisi", "wangwu", "zhaoliu"]), headers=ns.AUTH
        )
        assert r.status_code == 202
        queue.storage.flush_all()  # the queued push dies with the worker; the outbox row stays

        def die(*a, **k):
            raise Killed()

        with monkeypatch.context() as m:
            m.setattr(push, "_record_batch", die)
            with pytest.raises(Killed):
                push.run("wq-evt-000123", hook_settings)
        assert len(fake_wecom.sends) == 1  # WeCom accepted it: the members have the card
        card = ns.first_card_id()
        Notification.update(lease_until=None).execute()  # the dead worker's lease ran out

        c.deliver(ns.tap_xml("wangwu", card, "approve"))
        assert NotifyTask.get().state == "approved"

        trigger = enqueue(push.push, notification_id="wq-evt-000123")  # as the sweeper re-enqueues it
        assert trigger is not None
        ns.drain(queue)

    assert len(fake_wecom.sends) == 2 and fake_wecom.sends[0] == fake_wecom.sends[1]
    assert fake_wecom.sends[1]["enable_duplicate_check"] == 1
    assert {r.userid: r.status for r in NotifyRecipient.select()} == {
        "lisi": "sent",
        "wangwu": "sent",
        "zhaoliu": "sent",
    }
    assert NotifyCard.get().status == "sent"
    (update,) = fake_wecom.updates
    assert sorted(update["userids"]) == ["lisi", "zhaoliu"] and update["button"]["replace_name"] == "已由 王五 同意"
    assert len(webhook_receiver.accepted()) == 1


def test_a_tap_decided_before_the_push_recorded_its_batch_still_gets_the_other_cards_updated(
    hook_settings, store, queue, fake_wecom, webhook_receiver, monkeypatch
):
    """WeCom delivered the card; before the push recorded the batch, a member tapped it and the
    decision's card update ran — and found no sent batch to update. The push then recorded the
    batch, and the other members' cards kept their buttons for good (found by the long chaos run;
    a stalled worker is enough, no kill needed)."""
    from bot.notify import push
    from store.notifications import NotifyTask

    for u, name in (("lisi", "李四"), ("wangwu", "王五"), ("zhaoliu", "赵六")):
        ns.add_member(u, name)
    record = push._record_batch
    with CallbackClient(hook_settings) as c:
        r = c.post(
            "/api/v1/notifications", json=ns.notification(recipients=["lisi", "wangwu", "zhaoliu"]), headers=ns.AUTH
        )
        assert r.status_code == 202

        def tap_first(card, userids, answer):
            c.deliver(ns.tap_xml("wangwu", card.card_id, "approve"))
            assert NotifyTask.get().state == "approved"
            ns.drain(queue)  # the decision's card update and webhook run now, before the batch is recorded
            record(card, userids, answer)

        monkeypatch.setattr(push, "_record_batch", tap_first)
        ns.drain(queue)  # the push
        monkeypatch.setattr(push, "_record_batch", record)
        ns.drain(queue)
    assert len(fake_wecom.sends) == 1
    (update,) = fake_wecom.updates
    assert sorted(update["userids"]) == ["lisi", "zhaoliu"] and update["button"]["replace_name"] == "已由 王五 同意"
    assert len(webhook_receiver.accepted()) == 1
