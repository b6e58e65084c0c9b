"""Retries an operator asks for from the console (bot/notify/retry.py): resend a notification's
failed recipients, retry a failed webhook. Never a second card to someone already sent."""

from __future__ import annotations

import json

import pytest

from bot.notify import Refused, resend, retry_webhook
from store.models import Outbox
from store.notifications import Notification, NotifyCard, NotifyRecipient, NotifyTask, WebhookDelivery
from tests.notify import support as ns
from tests.notify.support import AUTH, add_member, drain, first_card_id, notification, tap_xml
from tests.support import CallbackClient


def post(client, body):
    r = client.post("/api/v1/notifications", json=body, headers=AUTH)
    assert r.status_code == 202, r.text


def test_resend_sends_only_the_failed_recipients_on_a_new_card(client, store, immediate_queue, fake_wecom):
    for u in ("lisi", "wangwu", "zhaoliu"):
        add_member(u)
    # WeCom says wangwu has no licence: failed, the others got their card
    fake_wecom.fail_sends = [
        {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "",
            "unlicenseduser": "wangwu",
            "msgid": "M1",
            "response_code": "RC-1",
        }
    ]
    post(client, notification(recipients=["lisi", "wangwu", "zhaoliu"]))
    first = fake_wecom.sends[0]["template_card"]["task_id"]
    assert client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()["status"] == "partial"

    assert resend("wq-evt-000123") == "1 recipient(s) queued"
    assert len(fake_wecom.sends) == 2 and fake_wecom.sends[1]["touser"] == "wangwu"
    second = fake_wecom.sends[1]["template_card"]["task_id"]
    assert second != first  # WeCom keeps a card's task_id once used
    assert NotifyCard.select().where(NotifyCard.notification == "wq-evt-000123").count() == 2
    got = client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
    assert got["status"] == "sent" and {r["status"] for r in got["recipients"]} == {"sent"}
    with pytest.raises(Refused) as e:  # nothing failed any more: a second click sends nothing
        resend("wq-evt-000123")
    assert e.value.code == "not_failed" and len(fake_wecom.sends) == 2


def test_resend_is_durable_and_a_second_click_while_queued_changes_nothing(store, queue, fake_wecom, settings):
    from bot.notify import intake, push
    from bot.notify.request import parse

    intake.accept(parse(notification(type="notice", task_id=None, recipients=["lisi", "wangwu"])))
    fake_wecom.fail_sends = [{"errcode": 40056, "errmsg": "invalid agentid"}]
    drain(queue)
    assert Notification.get_by_id("wq-evt-000123").status == "failed"
    Outbox.delete().execute()

    assert resend("wq-evt-000123") == "2 recipient(s) queued"
    assert resend("wq-evt-000123") == "already queued"
    # the push is promised in the store, not only in huey
    assert [o.task for o in Outbox.select()] == ["notify.push"]
    assert len(queue.pending()) == 1
    drain(queue)
    assert [s["touser"] for s in fake_wecom.sends] == ["lisi|wangwu", "lisi|wangwu"]
    assert push.run("wq-evt-000123", settings) == "sent" and len(fake_wecom.sends) == 2
    assert Outbox.select().count() == 0


def test_resend_reaches_a_recipient_who_joined_the_directory_since(client, store, immediate_queue, fake_wecom):
    add_member("lisi")
    post(client, notification(recipients=["lisi", "newbie"]))
    assert NotifyRecipient.get(NotifyRecipient.key == "newbie").status == "invalid"
    add_member("newbie")
    assert resend("wq-evt-000123") == "1 recipient(s) queued"
    assert fake_wecom.sends[-1]["touser"] == "newbie"
    assert NotifyRecipient.get(NotifyRecipient.key == "newbie").status == "sent"


def test_resend_refuses_a_decided_task_and_unknown_ids(hook_settings, store, immediate_queue, fake_wecom):
    c = CallbackClient(hook_settings)
    add_member("lisi")
    add_member("wangwu")
    fake_wecom.fail_sends = [
        {"errcode": 0, "errmsg": "ok", "unlicenseduser": "wangwu", "msgid": "M1", "response_code": "RC-1"}
    ]
    post(c, notification())
    c.deliver(tap_xml("lisi", first_card_id()))
    assert NotifyTask.get_by_id("T-1001").state == "approved"
    with pytest.raises(Refused) as e:
        resend("wq-evt-000123")
    assert e.value.code == "task_over" and "approved" in str(e.value)
    assert NotifyRecipient.get(NotifyRecipient.userid == "wangwu").status == "failed"  # rolled back
    with pytest.raises(Refused) as e:
        resend("wq-evt-nope")
    assert e.value.code == "not_found"


def test_retry_webhook_delivers_the_same_bytes_under_the_same_id(hook_settings, store, queue, webhook_receiver):
    from tests.notify.test_notify_webhook import owe

    webhook_receiver.statuses = [410]  # final: not retried on its own
    did = owe(hook_settings)
    drain(queue)
    assert WebhookDelivery.get_by_id(did).status == "failed"
    with pytest.raises(Refused):
        resend("no-such-notification")

    assert retry_webhook(did) == "queued"
    assert retry_webhook(did) == "already pending"
    assert [o.task for o in Outbox.select()] == ["notify.webhook"]
    drain(queue)
    first, second = webhook_receiver.deliveries
    assert second["status"] == 200 and second["raw"] == first["raw"]
    assert second["headers"]["X-Wqbot-Delivery"] == first["headers"]["X-Wqbot-Delivery"] == did
    row = WebhookDelivery.get_by_id(did)
    assert row.status == "delivered" and row.attempts == 2 and json.loads(row.body)["delivery"] == did
    with pytest.raises(Refused) as e:
        retry_webhook(did)
    assert e.value.code == "not_failed" and len(webhook_receiver.deliveries) == 2
    with pytest.raises(Refused) as e:
        retry_webhook("00000000-0000-4000-8000-000000000000")
    assert e.value.code == "not_found"


def test_console_buttons_run_the_real_actions(settings, store, immediate_queue, fake_wecom, webhook_receiver):
    from starlette.testclient import TestClient

    import settings as settings_mod
    from bot.app import create_app
    from tests.notify.test_notify_webhook import owe
    from tests.ops.test_admin import PASSWORD, csrf_of, login

    s = settings_mod.load(
        env={
            **ns.TEST_ENV,
            "ADMIN_PASSWORD": PASSWORD,
            "WEIQIAN_WEBHOOK_URL": webhook_receiver.url,
            "WEIQIAN_WEBHOOK_SECRET": ns.WEBHOOK_SECRET,
        },
        dotenv=None,
    )
    settings_mod.override(s)
    try:
        add_member("lisi")
        fake_wecom.fail_sends = [{"errcode": 40056, "errmsg": "invalid agentid"}]
        post(CallbackClient(s), notification(type="notice", task_id=None, recipients=["lisi"]))
        webhook_receiver.statuses = [410]
        did = owe(s)
        assert Notification.get_by_id("wq-evt-000123").status == "failed"
        assert WebhookDelivery.get_by_id(did).status == "failed"
        with TestClient(create_app(s, init_store=False), base_url="https://wqbot.example.com") as console:
            login(console)
            html = console.get("/admin/notifications").text
            assert 'action="/admin/actions/resend"' in html
            r = console.post("/admin/actions/resend", data={"csrf": csrf_of(html), "id": "wq-evt-000123"})
            assert "已重新发送通知" in r.text and "lisi：已送达" in r.text
            html = console.get("/admin/webhooks").text
            r = console.post("/admin/actions/retry-webhook", data={"csrf": csrf_of(html), "id": did})
            assert (
                "已重新投递" in r.text and "已投递" in r.text and 'action="/admin/actions/retry-webhook"' not in r.text
            )
    finally:
        settings_mod.override(settings)
    assert [x["touser"] for x in fake_wecom.sends] == ["lisi", "lisi"]
    assert [d["status"] for d in webhook_receiver.deliveries] == [410, 200]
