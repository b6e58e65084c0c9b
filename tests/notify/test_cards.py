"""Taps on sign-notification cards (template_card_event) through the signed callback endpoint:
first decision wins, later taps get 已处理, non-recipients are refused, every other card is
updated with the right response_code, the decision reaches 微签 as a signed webhook."""

from __future__ import annotations

import json

import pytest

from bot.notify import updates
from store.notifications import CardResponseCode, Notification, NotifyCard, NotifyTask, WebhookDelivery
from tests.notify.support import (
    AUTH,
    add_member,
    deadline_in,
    first_card_id,
    menu_xml,
    notification,
    tap_xml,
)
from tests.support import CallbackClient


def setup_task(c, recipients=("lisi", "wangwu", "zhaoliu"), **fields):
    for u, name in (("lisi", "李四"), ("wangwu", "王五"), ("zhaoliu", "赵六"), ("zhangsan", "张三")):
        add_member(u, name)
    r = c.post("/api/v1/notifications", json=notification(recipients=list(recipients), **fields), headers=AUTH)
    assert r.status_code == 202
    return first_card_id()


def test_first_tap_wins_others_updated_webhook_signed(
    hook_settings, store, immediate_queue, fake_wecom, webhook_receiver
):
    with CallbackClient(hook_settings) as c:
        card = setup_task(c)
        reply = c.deliver(tap_xml("wangwu", card, "approve", code="RC-wangwu-1"))
        assert reply["MsgType"] == "update_button" and reply["Button"]["ReplaceName"] == "已同意"
        assert reply["ToUserName"] == "wangwu"

        task = NotifyTask.get()
        assert (task.state, task.decided_by, task.decided_action, task.state_via) == (
            "approved",
            "wangwu",
            "approve",
            "chat",
        )
        # every other recipient's card, with the batch's send-time code, the winner left out
        (u,) = fake_wecom.updates
        assert u == {
            "agentid": 1000002,
            "userids": ["lisi", "zhaoliu"],
            "response_code": "RC-send-1",
            "button": {"replace_name": "已由 王五 同意"},
        }
        # the webhook, signed, as 微签 receives it
        (d,) = webhook_receiver.deliveries
        assert d["signature_ok"] and d["status"] == 200
        assert d["headers"]["X-Wqbot-Event"] == "task.action"
        assert d["headers"]["Content-Type"] == "application/json"
        body = json.loads(d["raw"])
        assert body == {
            "event": "task.action",
            "delivery": d["headers"]["X-Wqbot-Delivery"],
            "notification_id": "wq-evt-000123",
            "task_id": "T-1001",
            "action": "approve",
            "userid": "wangwu",
            "at": body["at"],
        }
        assert body["at"].endswith("Z")
        assert WebhookDelivery.get().status == "delivered"

        got = c.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
        assert got["status"] == "done" and got["task_state"] == "approved"
        assert got["action"] == {"action": "approve", "userid": "wangwu", "at": body["at"]}

        # a later tap changes nothing and is told so
        late = c.deliver(tap_xml("lisi", card, "reject", code="RC-lisi-1"))
        assert late["MsgType"] == "update_button" and late["Button"]["ReplaceName"] == "已处理"
        assert NotifyTask.get().decided_by == "wangwu" and len(webhook_receiver.deliveries) == 1
        assert len(fake_wecom.updates) == 1


def test_reject_shows_who_rejected(hook_settings, store, immediate_queue, fake_wecom, webhook_receiver):
    with CallbackClient(hook_settings) as c:
        card = setup_task(c)
        reply = c.deliver(tap_xml("lisi", card, "reject"))
        assert reply["Button"]["ReplaceName"] == "已拒绝"
        assert fake_wecom.updates[0]["button"] == {"replace_name": "已由 李四 拒绝"}
        assert json.loads(webhook_receiver.deliveries[0]["raw"])["action"] == "reject"
        assert NotifyTask.get().state == "rejected"


def test_a_non_recipient_is_refused(hook_settings, store, immediate_queue, fake_wecom, webhook_receiver):
    with CallbackClient(hook_settings) as c:
        card = setup_task(c, recipients=("lisi", "wangwu"))
        reply = c.deliver(tap_xml("zhaoliu", card, "approve"))
        assert reply["MsgType"] == "text" and "不是发给你的" in reply["Content"]
        assert NotifyTask.get().state == "pending"
        assert CardResponseCode.select().count() == 0
        assert fake_wecom.updates == [] and webhook_receiver.deliveries == []
        # the recipients still decide
        assert c.deliver(tap_xml("lisi", card))["Button"]["ReplaceName"] == "已同意"


def test_a_redelivered_tap_is_applied_once(hook_settings, store, immediate_queue, fake_wecom, webhook_receiver):
    with CallbackClient(hook_settings) as c:
        card = setup_task(c)
        xml = tap_xml("lisi", card, create_time=1764000000)
        first = c.deliver(xml)
        again = c.deliver(xml)  # WeCom's retry: same plaintext
        assert first["Button"] == again["Button"] == {"ReplaceName": "已同意"}
        assert len(webhook_receiver.deliveries) == 1 and len(fake_wecom.updates) == 1


def test_unknown_card_and_other_buttons(hook_settings, store, immediate_queue, fake_wecom):
    with CallbackClient(hook_settings) as c:
        setup_task(c)
        reply = c.deliver(tap_xml("lisi", "no-such-card", "approve"))
        assert reply["MsgType"] == "text" and "失效" in reply["Content"]
        assert c.deliver(tap_xml("lisi", first_card_id(), "something_else")) is None
        assert NotifyTask.get().state == "pending"


def test_tap_after_the_deadline_expires_the_task(hook_settings, store, immediate_queue, fake_wecom, webhook_receiver):
    with CallbackClient(hook_settings) as c:
        card = setup_task(c, deadline=deadline_in(days=-1))
        reply = c.deliver(tap_xml("lisi", card))
        assert reply["Button"]["ReplaceName"] == "已过期"
        assert NotifyTask.get().state == "expired"
        # 微签 hears of the expiry (task.expired), not of an action
        assert [d["headers"]["X-Wqbot-Event"] for d in webhook_receiver.deliveries] == ["task.expired"]
        assert [u["button"]["replace_name"] for u in fake_wecom.updates] == ["已过期"]
        assert fake_wecom.updates[0]["userids"] == ["lisi", "wangwu", "zhaoliu"]


def test_response_codes_latest_wins_and_spent_once(hook_settings, store, immediate_queue, fake_wecom, webhook_receiver):
    """The send code updates the batch once (the decision); a later close reaches the winner's
    card through the code of their own tap, and nobody else's (their codes are spent)."""
    with CallbackClient(hook_settings) as c:
        card = setup_task(c)
        c.deliver(tap_xml("lisi", card, "approve", code="RC-lisi-old"))
        assert CardResponseCode.get().response_code == "RC-lisi-old"
        # one more callback from lisi's card: the newest code replaces the old one
        c.deliver(tap_xml("lisi", card, "reject", code="RC-lisi-new"))
        assert [r.response_code for r in CardResponseCode.select()] == ["RC-lisi-new"]
        assert NotifyCard.get().code_used_at is not None
        r = c.post(
            "/api/v1/notifications",
            json={"id": "c1", "type": "close", "task_id": "T-1001", "result": "withdrawn"},
            headers=AUTH,
        )
        assert r.status_code == 202
        assert [(u["userids"], u["response_code"], u["button"]["replace_name"]) for u in fake_wecom.updates] == [
            (["wangwu", "zhaoliu"], "RC-send-1", "已由 李四 同意"),
            (["lisi"], "RC-lisi-new", "已撤销"),
        ]
        assert CardResponseCode.get().used_at is not None
        # late taps now get the result
        assert c.deliver(tap_xml("wangwu", card))["Button"]["ReplaceName"] == "已撤销"


def test_a_send_code_held_by_an_attempt_that_died_is_used_once_its_claim_runs_out(
    hook_settings, store, immediate_queue, fake_wecom, webhook_receiver, clock
):
    """A worker claimed the batch's send code for an update and died before using it. The
    decision's update must not call the batch done with its cards unchanged: it is retried, and
    once the claim has run out the code updates every other card."""
    with CallbackClient(hook_settings) as c:
        card = setup_task(c)
        NotifyCard.update(code_claimed_at=clock()).execute()  # the claimant died holding it
        c.deliver(tap_xml("wangwu", card, "approve", code="RC-wangwu-1"))
    assert fake_wecom.updates == []
    task = NotifyTask.get()
    assert task.state == "approved" and NotifyCard.get().applied_revision < task.revision
    with pytest.raises(updates.SendCodeHeld):  # still held: tried again later, not given up
        updates.run(task.task_id, task.revision, ["wangwu"], hook_settings)
    clock.advance(updates.CLAIM_TTL + 1)
    assert updates.run(task.task_id, task.revision, ["wangwu"], hook_settings) == 1
    (u,) = fake_wecom.updates
    assert (u["userids"], u["response_code"]) == (["lisi", "zhaoliu"], "RC-send-1")
    assert NotifyCard.get().applied_revision == task.revision


def test_2500_recipients_one_tap_three_update_calls(
    hook_settings, store, immediate_queue, fake_wecom, webhook_receiver
):
    people = [f"user{i:04d}" for i in range(2500)]
    with CallbackClient(hook_settings) as c:
        c.post("/api/v1/notifications", json=notification(recipients=people), headers=AUTH)
        cards = [s["template_card"]["task_id"] for s in fake_wecom.sends]
        c.deliver(tap_xml("user1500", cards[1]))
    sizes = sorted((u["response_code"], len(u["userids"])) for u in fake_wecom.updates)
    assert sizes == [("RC-send-1", 1000), ("RC-send-2", 999), ("RC-send-3", 500)]
    assert all("user1500" not in u["userids"] for u in fake_wecom.updates)
    assert len(webhook_receiver.accepted()) == 1


def test_sign_card_menu_answers_with_the_link_and_keeps_the_code(hook_settings, store, immediate_queue, fake_wecom):
    with CallbackClient(hook_settings) as c:
        c.post("/api/v1/notifications", json=notification(type="sign", url="/pages/sign/sign?id=T-1001"), headers=AUTH)
        card = first_card_id()
        reply = c.deliver(menu_xml("lisi", card, code="RC-menu-lisi"))
        assert reply["MsgType"] == "news"
        item = reply["Articles"]["item"]
        assert item["Url"] == "https://wqbot.example.com/oauth/h5?next=%2Fpages%2Fsign%2Fsign%3Fid%3DT-1001"
        assert CardResponseCode.get().response_code == "RC-menu-lisi"
        # a button event on a sign card decides nothing
        assert c.deliver(tap_xml("lisi", card))["Button"]["ReplaceName"] == "已处理"
        assert NotifyTask.get().state == "pending"


def test_without_a_webhook_url_actions_are_only_stored(client, settings, store, immediate_queue, fake_wecom):
    card = setup_task(client)
    client.deliver(tap_xml("lisi", card))
    assert NotifyTask.get().state == "approved" and WebhookDelivery.select().count() == 0
    assert Notification.get().id == "wq-evt-000123"
