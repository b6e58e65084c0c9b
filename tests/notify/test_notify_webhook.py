"""The webhook to 微签: signed as docs/api.md ("The webhook") says, retried with backoff on 5xx/408/429 and
connection errors (same delivery id, same bytes), final on other 4xx, given up after 24 h, and
never lost or doubled when the worker dies between the decision's commit and the send."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from bot.notify import webhook
from store.models import Outbox
from store.notifications import NotifyTask, WebhookAttempt, WebhookDelivery
from tests.notify.support import AUTH, WEBHOOK_SECRET, drain, first_card_id, notification, tap_xml
from tests.support import CallbackClient, webhook_signed_at


def owe(s, **kw) -> str:
    """A decision's webhook row, as the tap handler writes it (outside a callback here)."""
    from bot import queue
    from store import db

    with db.atomic():
        did = webhook.owe_action(
            s,
            notification_id="wq-evt-000123",
            task_id="T-1001",
            action="approve",
            userid="lisi",
            account=kw.get("account"),
            at=kw.get("at") or time.time(),
        )
    queue.enqueue_outbox()
    return did


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_signature_signs_the_timestamp_with_the_body_and_keeps_the_body_only_v0():
    body = '{"event":"task.action","delivery":"d","task_id":"T-1"}'.encode()
    v1 = hmac.new(b"s3cret", b"1767225600." + body, hashlib.sha256).hexdigest()
    v0 = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert webhook.signature("s3cret", body, 1767225600) == f"t=1767225600,v1={v1},v0={v0}"
    assert webhook_signed_at("s3cret", webhook.signature("s3cret", body, 1767225600), body) == 1767225600


def test_the_reference_check_refuses_replays_changed_bodies_and_the_old_header():
    body, now = b'{"event":"task.action"}', 1767225600.0
    header = webhook.signature("s3cret", body, int(now))
    assert webhook.check_signature("s3cret", header, body, now + 300) is None
    assert "more than 300 s" in webhook.check_signature("s3cret", header, body, now + 301)  # replayed later
    assert "more than 300 s" in webhook.check_signature("s3cret", header, body, now - 301)  # from the future
    assert "no v1=" in webhook.check_signature("s3cret", header, body + b" ", now)
    assert "no v1=" in webhook.check_signature("other", header, body, now)
    v0_only = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert "no t=" in webhook.check_signature("s3cret", v0_only, body, now)
    # a v1 from another timestamp does not verify under this one
    moved = header.replace("t=1767225600", "t=1767225700")
    assert "no v1=" in webhook.check_signature("s3cret", moved, body, now)
    assert "no v1=" in webhook.check_signature("s3cret", header.replace("v1=", "v1=\u00e9"), body, now)


def test_delivery_as_the_receiver_sees_it(hook_settings, store, queue, webhook_receiver):
    did = owe(hook_settings, account="13800000001", at=1764064800.0)
    assert webhook.attempt(did, hook_settings, clock=Clock(1764064801.0), schedule=False) == "delivered"
    (d,) = webhook_receiver.deliveries
    assert d["signature_ok"] and d["signed_at"] == 1764064801  # signed when the attempt was made
    h = d["headers"]
    assert (h["X-Wqbot-Event"], h["X-Wqbot-Delivery"], h["Content-Type"]) == ("task.action", did, "application/json")
    v0 = hmac.new(WEBHOOK_SECRET.encode(), d["raw"], hashlib.sha256).hexdigest()
    assert h["X-Wqbot-Signature"].startswith("t=1764064801,v1=") and h["X-Wqbot-Signature"].endswith(",v0=" + v0)
    assert json.loads(d["raw"]) == {
        "event": "task.action",
        "delivery": did,
        "notification_id": "wq-evt-000123",
        "task_id": "T-1001",
        "action": "approve",
        "userid": "lisi",
        "at": "2025-11-25T10:00:00Z",
        "account": "13800000001",
    }
    row = WebhookDelivery.get_by_id(did)
    assert (row.status, row.attempts, row.last_status) == ("delivered", 1, 200)
    assert webhook.attempt(did, hook_settings, clock=Clock(1764064900.0), schedule=False) == "skipped"  # done
    assert len(webhook_receiver.deliveries) == 1


def test_a_receiver_with_another_secret_refuses_and_that_is_final(hook_settings, store, queue, webhook_receiver):
    import dataclasses

    did = owe(hook_settings)
    wrong = dataclasses.replace(hook_settings, weiqian_webhook_secret="not-the-shared-secret")
    assert webhook.attempt(did, wrong, schedule=False) == "failed"
    (d,) = webhook_receiver.deliveries
    assert not d["signature_ok"] and d["status"] == 401
    row = WebhookDelivery.get_by_id(did)
    assert row.status == "failed" and row.last_status == 401 and "final" in row.last_error


def test_retried_with_backoff_until_success_with_the_same_delivery_id(hook_settings, store, queue, webhook_receiver):
    webhook_receiver.statuses = [503, 500, 429, 408]
    did = owe(hook_settings)
    clock = Clock(WebhookDelivery.get_by_id(did).created_at)
    outcomes, waits = [], []
    for _ in range(6):
        outcome = webhook.attempt(did, hook_settings, clock=clock, schedule=False)
        outcomes.append(outcome)
        if outcome != "retry":
            break
        row = WebhookDelivery.get_by_id(did)
        waits.append(row.next_attempt_at - clock.t)
        # not due yet: nothing is sent
        assert webhook.attempt(did, hook_settings, clock=clock, schedule=False) == "skipped"
        clock.t = row.next_attempt_at
    assert outcomes == ["retry", "retry", "retry", "retry", "delivered"]
    assert all(b > a for a, b in zip(waits, waits[1:], strict=False)), waits  # exponential
    assert 4 <= waits[0] <= 6
    ids = {d["headers"]["X-Wqbot-Delivery"] for d in webhook_receiver.deliveries}
    assert ids == {did} and len({d["raw"] for d in webhook_receiver.deliveries}) == 1
    # each try is signed afresh, so a receiver's replay window holds for a late retry too
    signed = [d["signed_at"] for d in webhook_receiver.deliveries]
    assert signed == sorted(signed) and len(set(signed)) == 5
    assert [d["status"] for d in webhook_receiver.deliveries] == [503, 500, 429, 408, 200]
    assert [a.status_code for a in WebhookAttempt.select().order_by(WebhookAttempt.id)] == [503, 500, 429, 408, 200]
    assert WebhookDelivery.get_by_id(did).status == "delivered"


def test_connection_errors_are_retried(hook_settings, store, queue, webhook_receiver):
    import dataclasses

    did = owe(hook_settings)
    closed = dataclasses.replace(hook_settings, weiqian_webhook_url="http://127.0.0.1:9/nothing-listens")
    assert webhook.attempt(did, closed, schedule=False) == "retry"
    a = WebhookAttempt.get()
    assert a.status_code is None and "connection failed" in a.error


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_are_final_and_recorded(hook_settings, store, queue, webhook_receiver, status):
    webhook_receiver.statuses = [status]
    did = owe(hook_settings)
    assert webhook.attempt(did, hook_settings, schedule=False) == "failed"
    row = WebhookDelivery.get_by_id(did)
    assert row.status == "failed" and row.last_status == status and row.finished_at
    assert WebhookAttempt.select().count() == 1


def test_given_up_after_24_hours(hook_settings, store, queue, webhook_receiver):
    webhook_receiver.statuses = [503] * 100
    did = owe(hook_settings)
    start = WebhookDelivery.get_by_id(did).created_at
    clock = Clock(start)
    n = 0
    while (outcome := webhook.attempt(did, hook_settings, clock=clock, schedule=False)) == "retry":
        n += 1
        clock.t = WebhookDelivery.get_by_id(did).next_attempt_at
        assert clock.t <= start + 24 * 3600
    assert outcome == "failed" and clock.t == start + 24 * 3600
    assert 20 <= n <= 40  # 5 s doubling to hourly
    assert "24 h" in WebhookDelivery.get_by_id(did).last_error


def test_a_failed_try_schedules_the_next_in_huey(hook_settings, store, queue, webhook_receiver):
    webhook_receiver.statuses = [502]
    did = owe(hook_settings)
    queue.storage.flush_all()  # only the retry should be in huey below
    assert webhook.attempt(did, hook_settings) == "retry"
    (retry,) = queue.pending()
    assert retry.name == "notify.webhook" and retry.args[:2] == (None, {"delivery_id": did}) and retry.eta
    drain(queue)  # a worker takes it and, not due yet, puts it on the schedule
    assert [t.id for t in queue.scheduled()] == [retry.id] and len(webhook_receiver.deliveries) == 1


def _decide(c) -> None:
    assert c.deliver(tap_xml("lisi", first_card_id()))["Button"]["ReplaceName"] == "已同意"


def test_worker_dies_between_commit_and_send_then_exactly_once(
    hook_settings, store, queue, fake_wecom, webhook_receiver
):
    """The decision committed its outbox rows; the worker that took the tasks died (the queue
    is flushed: huey had already dropped them). After a restart the sweeper re-enqueues the
    rows, and 微签 gets the webhook exactly once, however often the sweepers run."""
    from bot.notify import sweep
    from bot.queue import STALE_AFTER, sweep_outbox

    with CallbackClient(hook_settings) as c:
        c.post("/api/v1/notifications", json=notification(), headers=AUTH)
        drain(queue)  # the push
        _decide(c)
    assert NotifyTask.get().state == "approved"
    assert sorted(o.task for o in Outbox.select()) == ["notify.update_cards", "notify.webhook"]
    queue.storage.flush_all()  # the worker died with the tasks it had taken
    assert webhook_receiver.deliveries == [] and fake_wecom.updates == []

    # the restarted worker's sweeper: rows older than STALE_AFTER are handed to huey again
    Outbox.update(enqueued_at=Outbox.enqueued_at - STALE_AFTER - 1).execute()
    assert sweep_outbox.call_local() == 2
    drain(queue)
    assert len(webhook_receiver.accepted()) == 1 and len(fake_wecom.updates) == 1
    assert Outbox.select().count() == 0 and WebhookDelivery.get().status == "delivered"

    for _ in range(3):  # more sweeps, later: nothing is sent again
        Outbox.update(enqueued_at=Outbox.enqueued_at - STALE_AFTER - 1).execute()
        sweep_outbox.call_local()
        sweep.sweep.call_local()
        drain(queue)
    assert len(webhook_receiver.deliveries) == 1 and len(fake_wecom.updates) == 1


def test_a_lost_scheduled_retry_is_found_by_the_notify_sweep(hook_settings, store, queue, webhook_receiver):
    from bot.notify import sweep

    webhook_receiver.statuses = [503]
    did = owe(hook_settings)
    drain(queue)  # first try: 503, retry scheduled in huey
    assert WebhookDelivery.get_by_id(did).status == "pending" and Outbox.select().count() == 0
    queue.storage.flush_all()  # the scheduled retry is lost with its worker
    WebhookDelivery.update(next_attempt_at=WebhookDelivery.next_attempt_at - 600).execute()  # ten minutes on
    assert sweep.sweep.call_local()["webhooks"] == 1
    drain(queue)
    assert [d["status"] for d in webhook_receiver.deliveries] == [503, 200]
    assert WebhookDelivery.get_by_id(did).status == "delivered"
    assert sweep.sweep.call_local()["webhooks"] == 0
