"""Two taps at the same moment on two workers: exactly one decision, one webhook.

Each tap is verified and routed by the callback endpoint and applied by the routine the endpoint
uses (bot.callback.deliveries.apply) in its own thread, so on its own database connection, as two
web processes would. (Within one process the group commit already serialises deliveries through
one connection.)"""

from __future__ import annotations

import threading
import time

import pytest

from bot.callback.xml import parse
from store import db
from store.notifications import NotifyCard, NotifyTask, WebhookDelivery
from tests.conftest import BACKEND
from tests.notify.support import AUTH, add_member, drain, notification, tap_xml
from tests.support import CallbackClient, app_crypto, signed


def endpoint(s):
    from bot.app import create_app

    return next(r.endpoint for r in create_app(s, init_store=False).routes if r.path == "/wecom/callback")


def tap_once(ep, s, user: str, card: str, key: str, out: dict, barrier: threading.Barrier | None = None):
    """One worker: verify, decrypt and apply the tap in its own transaction on its own connection,
    redelivering (as WeCom retries) when applying it failed (the endpoint answers that with a 5xx)."""
    from bot.callback import deliveries
    from bot.callback.router import Inbound
    from bot.queue import enqueue_outbox

    params, body = signed(app_crypto(s), tap_xml(user, card, key))
    plaintext = app_crypto(s).decrypt_message(
        params["msg_signature"], params["timestamp"], params["nonce"], parse(body)["Encrypt"]
    )
    if barrier is not None:
        barrier.wait()
    try:
        for _ in range(5):
            d = ep.delivery(Inbound(parse(plaintext)), plaintext)
            [(ok, reply_xml)] = deliveries.apply([d])
            if ok:
                d.context.run(enqueue_outbox)
                reply = parse(reply_xml)
                out[user] = reply.get("Button", {}).get("ReplaceName") or reply.get("Content")
                return
            out["retries"] = out.get("retries", 0) + 1
            time.sleep(0.05)
    finally:
        db.close()


def push(c, queue, n: int):
    add_member("lisi", "李四")
    add_member("wangwu", "王五")
    add_member("zhaoliu", "赵六")
    for i in range(n):
        r = c.post(
            "/api/v1/notifications",
            headers=AUTH,
            json=notification(id=f"n{i}", task_id=f"T-{i}", recipients=["lisi", "wangwu", "zhaoliu"]),
        )
        assert r.status_code == 202
    drain(queue)
    return {c.task_id: c.card_id for c in NotifyCard.select()}


@pytest.mark.skipif(BACKEND != "pg", reason="row locks between two connections: PostgreSQL")
def test_second_tap_waits_on_the_row_lock_and_loses(
    hook_settings, store, queue, fake_wecom, webhook_receiver, monkeypatch
):
    """Worker A has decided but not committed; worker B's tap is blocked on the task row; when A
    commits, B's conditional UPDATE matches no row and B answers 已处理."""
    from bot.notify import decisions

    with CallbackClient(hook_settings) as c:
        cards = push(c, queue, 1)
    ep = endpoint(hook_settings)
    claimed, release = threading.Event(), threading.Event()
    real = decisions.owe_action

    def slow_owe(*a, **kw):  # runs inside the winner's transaction, after its UPDATE
        claimed.set()
        assert release.wait(10)
        return real(*a, **kw)

    monkeypatch.setattr(decisions, "owe_action", slow_owe)
    out: dict = {}
    a = threading.Thread(target=tap_once, args=(ep, hook_settings, "lisi", cards["T-0"], "approve", out))
    b = threading.Thread(target=tap_once, args=(ep, hook_settings, "wangwu", cards["T-0"], "reject", out))
    a.start()
    assert claimed.wait(10)
    b.start()
    deadline = time.time() + 10
    while time.time() < deadline:  # B is really waiting for A's row lock
        waiting = db.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        if waiting:
            break
        time.sleep(0.02)
    else:
        rows = db.execute_sql(
            "SELECT state, wait_event_type, wait_event, left(query, 120) FROM pg_stat_activity "
            "WHERE datname = current_database()"
        ).fetchall()
        pytest.fail(f"the second tap never waited on the task row: {rows} {out}")
    release.set()
    a.join(10)
    b.join(10)
    assert out == {"lisi": "已同意", "wangwu": "已处理"}
    task = NotifyTask.get()
    assert (task.state, task.decided_by, task.revision) == ("approved", "lisi", 1)
    assert WebhookDelivery.select().count() == 1
    drain(queue)
    assert len(webhook_receiver.accepted()) == 1
    (u,) = fake_wecom.updates
    assert u["userids"] == ["wangwu", "zhaoliu"] and u["button"]["replace_name"] == "已由 李四 同意"


def test_simultaneous_taps_on_two_workers_decide_once(hook_settings, store, queue, fake_wecom, webhook_receiver):
    rounds = 8
    with CallbackClient(hook_settings) as c:
        cards = push(c, queue, rounds)
    ep = endpoint(hook_settings)
    outcomes = []
    for i in range(rounds):
        out: dict = {}
        barrier = threading.Barrier(2)
        workers = [
            threading.Thread(target=tap_once, args=(ep, hook_settings, u, cards[f"T-{i}"], k, out, barrier))
            for u, k in (("lisi", "approve"), ("wangwu", "reject"))
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        outcomes.append(out)
        replies = sorted(out[u] for u in ("lisi", "wangwu"))
        assert replies in (["已同意", "已处理"], ["已处理", "已拒绝"]), out
    tasks = list(NotifyTask.select())
    assert all(t.state in ("approved", "rejected") and t.revision == 1 for t in tasks)
    assert WebhookDelivery.select().count() == rounds
    drain(queue)
    assert len(webhook_receiver.accepted()) == rounds
    assert len({d["headers"]["X-Wqbot-Delivery"] for d in webhook_receiver.deliveries}) == rounds
