"""Deadline reminders and expiry (docs/notifications.md, "Follow-up"), with the clock pinned."""

from __future__ import annotations

import json
from datetime import datetime

from bot.notify import reminders, sweep
from store.clock import CST
from store.followup import TaskReminder
from store.notifications import NotifyTask, WebhookDelivery
from tests.notify.support import AUTH, add_member, deadline_in, drain, notification, tap_xml


def post(client, body):
    r = client.post("/api/v1/notifications", json=body, headers=AUTH)
    assert r.status_code == 202, r.text
    return r


def reminder_sends(fake_wecom) -> list[dict]:
    return [s for s in fake_wecom.sends if s["msgtype"] == "textcard"]


def deadline_of() -> float:
    return NotifyTask.get().deadline


def test_a_reminder_goes_once_per_recipient(client, store, immediate_queue, fake_wecom, settings, clock):
    for u in ("lisi", "wangwu"):
        add_member(u)
    post(client, notification(title="采购合同", deadline=deadline_in(days=3)))
    deadline = deadline_of()
    clock.set(deadline - 25 * 3600)  # not yet due: 24 h before by default
    assert reminders.run(settings) == 0
    clock.set(deadline - 24 * 3600 + 30)
    assert reminders.run(settings) == 2
    (send,) = reminder_sends(fake_wecom)
    assert send["touser"] == "lisi|wangwu" and send["enable_duplicate_check"] == 1
    d = datetime.fromtimestamp(deadline, CST)
    assert send["textcard"]["description"] == f"《采购合同》将于 {d.month}月{d.day}日 18:00 截止，请尽快处理"
    # it opens the task logged in, through /oauth/h5
    assert send["textcard"]["url"].startswith("https://wqbot.example.com/oauth/h5?next=%2Fpages%2Ftask%2F")
    # again this minute, the next minute, an hour later: nothing more
    for step in (0, 60, 3600):
        clock.advance(step)
        assert reminders.run(settings) == 0
    assert len(reminder_sends(fake_wecom)) == 1
    assert {(r.userid, r.status) for r in TaskReminder.select()} == {("lisi", "sent"), ("wangwu", "sent")}


def test_no_reminder_after_a_decision(client, store, immediate_queue, fake_wecom, settings, clock):
    from bot.notify.decisions import tap

    for u in ("lisi", "wangwu"):
        add_member(u)
    post(client, notification(deadline=deadline_in(days=3)))
    card = fake_wecom.sends[0]["template_card"]["task_id"]
    client.deliver(tap_xml("lisi", card))
    assert NotifyTask.get().state == "approved"
    clock.set(deadline_of() - 3600)
    assert reminders.run(settings) == 0
    assert reminder_sends(fake_wecom) == []
    assert tap  # the decision path is the callback's, above


def test_a_closed_task_and_a_notification_without_reminder_send_none(
    client, store, immediate_queue, fake_wecom, settings, clock
):
    add_member("lisi")
    post(client, notification(id="n1", task_id="T-1", recipients=["lisi"], deadline=deadline_in(days=3)))
    post(client, {"id": "n1-close", "type": "close", "task_id": "T-1", "result": "withdrawn"})
    post(
        client,
        notification(id="n2", task_id="T-2", recipients=["lisi"], deadline=deadline_in(days=3), remind_before_hours=0),
    )
    clock.set(NotifyTask.get(NotifyTask.task_id == "T-2").deadline - 60)
    assert reminders.run(settings) == 0
    assert reminder_sends(fake_wecom) == []


def test_a_notification_sets_its_own_reminder_time(client, store, immediate_queue, fake_wecom, settings, clock):
    add_member("lisi")
    post(client, notification(recipients=["lisi"], deadline=deadline_in(days=5), remind_before_hours=72))
    clock.set(deadline_of() - 73 * 3600)
    assert reminders.run(settings) == 0
    clock.set(deadline_of() - 72 * 3600)
    assert reminders.run(settings) == 1


def test_a_task_opened_inside_its_reminder_window_gets_no_reminder(
    client, store, immediate_queue, fake_wecom, settings, clock
):
    add_member("lisi")
    soon = datetime.fromtimestamp(clock.at + 10 * 3600, CST).isoformat()  # 10 h away: inside 24 h
    post(client, notification(recipients=["lisi"], deadline=soon))
    clock.set(deadline_of() - 60)
    assert reminders.run(settings) == 0


def test_remind_before_hours_is_checked(client, store):
    r = client.post("/api/v1/notifications", json=notification(remind_before_hours=-1), headers=AUTH)
    assert r.status_code == 400 and "remind_before_hours" in r.text


def test_a_second_worker_or_a_restart_sends_no_second_reminder(
    client, store, immediate_queue, fake_wecom, settings, clock
):
    add_member("lisi")
    post(client, notification(recipients=["lisi"], deadline=deadline_in(days=3)))
    clock.set(deadline_of() - 3600)
    # a worker holds the task's lease (it is sending): a second one takes nothing
    NotifyTask.update(remind_lease_until=clock.at + 60).execute()
    assert reminders.run(settings) == 0
    # that worker died having recorded nothing: after its lease the task is reminded, once
    clock.advance(121)
    assert reminders.run(settings) == 1
    assert reminders.run(settings) == 0
    assert len(reminder_sends(fake_wecom)) == 1


def test_expiry_updates_every_live_card_and_owes_one_webhook(
    client, store, queue, fake_wecom, hook_settings, webhook_receiver, clock
):
    for u in ("lisi", "wangwu", "zhaoliu"):
        add_member(u)
    post(client, notification(recipients=["lisi", "wangwu", "zhaoliu"], deadline=deadline_in(days=2)))
    drain(queue)
    card = fake_wecom.sends[0]["template_card"]["task_id"]
    clock.set(deadline_of() + 30)  # within the minute after the deadline
    assert sweep.expire_due() == 1
    assert sweep.expire_due() == 0  # the next sweep (or a second worker): nothing more
    drain(queue)
    assert NotifyTask.get().state == "expired"
    # one batched update_template_card for every recipient's card
    (update,) = fake_wecom.updates
    assert sorted(update["userids"]) == ["lisi", "wangwu", "zhaoliu"]
    assert update["button"]["replace_name"] == "已过期"
    (hook,) = webhook_receiver.accepted()
    assert hook["signature_ok"] and hook["headers"]["X-Wqbot-Event"] == "task.expired"
    body = json.loads(hook["raw"])
    assert (
        body["event"] == "task.expired" and body["task_id"] == "T-1001" and body["notification_id"] == "wq-evt-000123"
    )
    assert WebhookDelivery.select().count() == 1
    # a tap after the deadline is answered 已过期 and owes nothing more
    client.deliver(tap_xml("lisi", card))
    drain(queue)
    assert WebhookDelivery.select().count() == 1


def test_a_tap_after_the_deadline_expires_the_task_once(
    store, queue, fake_wecom, hook_settings, webhook_receiver, clock
):
    from tests.support import CallbackClient

    add_member("lisi")
    with CallbackClient(hook_settings) as client:
        post(client, notification(recipients=["lisi"], deadline=deadline_in(days=2)))
        drain(queue)
        card = fake_wecom.sends[0]["template_card"]["task_id"]
        clock.set(deadline_of() + 1)
        reply = client.deliver(tap_xml("lisi", card))
    assert "已过期" in json.dumps(reply, ensure_ascii=False)
    assert sweep.expire_due() == 0
    drain(queue)
    assert NotifyTask.get().state == "expired"
    assert [json.loads(d["raw"])["event"] for d in webhook_receiver.accepted()] == ["task.expired"]
