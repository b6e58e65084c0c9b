"""POST/GET /api/v1/notifications, the fan-out, the card JSON (checked against docs/wecom.md, "Messages and cards"),
recipient mapping and statuses, close, deadlines, and the 待我处理 data contract."""

from __future__ import annotations

import re

import pytest

from store.models import Outbox
from store.notifications import Notification, NotifyCard, NotifyRecipient, NotifyTask
from tests.notify.support import AUTH, add_member, deadline_in, notification, shown_deadline

TASK_ID = re.compile(r"^[0-9A-Za-z_\-@]+$")


# -- WeCom's card rules (docs/wecom.md), as code ------------------------------------------------
def check_card(card: dict) -> None:
    assert card["card_type"] in (
        "text_notice",
        "news_notice",
        "button_interaction",
        "vote_interaction",
        "multiple_interaction",
    )
    if "task_id" in card:
        assert TASK_ID.match(card["task_id"]) and len(card["task_id"].encode()) <= 128
    if card["card_type"] in ("button_interaction", "vote_interaction", "multiple_interaction") or "action_menu" in card:
        assert card.get("task_id"), "task_id is required for button cards and with action_menu"
    if "source" in card:
        assert card["source"].get("desc_color", 0) in (0, 1, 2, 3)
    if card["card_type"] == "text_notice":
        assert card.get("main_title", {}).get("title") or card.get("sub_title_text")
        assert card.get("card_action"), "card_action is required for text_notice"
    if "card_action" in card:
        a = card["card_action"]
        assert a["type"] in (1, 2) and (a["type"] != 1 or a["url"].startswith("http"))
    if "action_menu" in card:
        assert 1 <= len(card["action_menu"]["action_list"]) <= 3
        assert all(x["text"] and x["key"] for x in card["action_menu"]["action_list"])
    for row in card.get("horizontal_content_list", []):
        assert row["keyname"]
        if row.get("type") == 1:
            assert row["url"]
        if row.get("type") == 3:
            assert row["userid"]
    assert len(card.get("horizontal_content_list", [])) <= 6
    assert len(card.get("jump_list", [])) <= 3
    for j in card.get("jump_list", []):
        assert j["title"] and (j.get("type") != 1 or j["url"].startswith("http"))
    if card["card_type"] == "button_interaction":
        buttons = card["button_list"]
        assert 1 <= len(buttons) <= 6
        for b in buttons:
            assert b["text"] and b.get("style", 1) in (1, 2, 3, 4)
            if b.get("type", 0) == 0:
                assert b["key"] and len(b["key"].encode()) <= 1024


def check_send(body: dict) -> None:
    ids = body["touser"].split("|")
    assert 1 <= len(ids) <= 1000 and all(ids)
    assert body["msgtype"] == "template_card"
    assert body["agentid"] == 1000002
    assert body["enable_duplicate_check"] == 1 and 0 < body["duplicate_check_interval"] <= 14400
    check_card(body["template_card"])


def post(client, body, auth=AUTH):
    return client.post("/api/v1/notifications", json=body, headers=auth)


# -- the API ------------------------------------------------------------------------------------
def test_needs_the_bearer_token(client, store):
    assert post(client, notification(), auth={}).status_code == 401
    assert post(client, notification(), auth={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/notifications/x").status_code == 401


@pytest.mark.parametrize(
    "change, field",
    [
        ({"id": None}, "id"),
        ({"id": 12}, "id"),
        ({"type": "fax"}, "type"),
        ({"task_id": None}, "task_id"),
        ({"title": ""}, "title"),
        ({"recipients": None}, "recipients"),
        ({"recipients": []}, "recipients"),
        ({"recipients": "lisi"}, "recipients"),
        ({"recipients": ["lisi", ""]}, "recipients[1]"),
        ({"recipients": ["lisi", 7]}, "recipients[1]"),
        ({"url": "https://evil.example.com/x"}, "url"),
        ({"url": "//evil.example.com/x"}, "url"),
        ({"deadline": "tomorrow"}, "deadline"),
        ({"deadline": 1764583200}, "deadline"),  # a number, not an ISO 8601 string
        ({"type": "close", "result": "maybe"}, "result"),
    ],
)
def test_a_bad_field_gets_a_400_naming_it(client, store, queue, change, field):
    r = post(
        client,
        notification(
            **{k: v for k, v in change.items() if v is not None}, **{k: None for k, v in change.items() if v is None}
        ),
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_field"
    assert r.json()["message"].startswith(field + ":")
    assert Notification.select().count() == 0 and Outbox.select().count() == 0


def test_malformed_json_is_a_400(client, store):
    r = client.post("/api/v1/notifications", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"


def test_stored_and_queued_before_the_202(client, store, queue):
    r = post(client, notification())
    assert r.status_code == 202 and r.json() == {"id": "wq-evt-000123", "status": "queued"}
    n = Notification.get_by_id("wq-evt-000123")
    assert n.kind == "approve" and n.task_id == "T-1001" and n.status == "queued"
    assert [o.task for o in Outbox.select()] == ["notify.push"]
    assert len(queue) == 1  # handed to huey after the commit
    task = NotifyTask.get_by_id("T-1001")
    assert (task.state, task.kind, task.initiator) == ("pending", "approve", "zhangsan")
    got = client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
    assert got["status"] == "queued" and got["action"] is None
    assert got["recipients"] == [{"userid": "lisi", "status": "queued"}, {"userid": "wangwu", "status": "queued"}]


def test_the_same_id_again_answers_the_first_result_and_sends_nothing(client, store, immediate_queue, fake_wecom):
    first = post(client, notification())
    assert first.status_code == 202 and len(fake_wecom.sends) == 1
    again = post(client, notification(title="另一个标题", recipients=["zhaoliu"]))
    assert again.status_code == 202
    assert again.json() == {"id": "wq-evt-000123", "status": "sent"}
    assert len(fake_wecom.sends) == 1 and Notification.select().count() == 1
    assert Outbox.select().count() == 0
    assert NotifyRecipient.select().count() == 2


def test_get_unknown_is_404(client, store):
    r = client.get("/api/v1/notifications/nope", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


# -- card JSON ------------------------------------------------------------------------------------
def test_approve_card(client, store, immediate_queue, fake_wecom, settings):
    add_member("lisi", "李四")
    add_member("wangwu", "王五")
    add_member("zhangsan", "张三")
    body = notification()
    assert post(client, body).status_code == 202
    (send,) = fake_wecom.sends
    check_send(send)
    assert send["touser"] == "lisi|wangwu"
    card = send["template_card"]
    assert card["card_type"] == "button_interaction"
    assert [(b["text"], b["key"], b["type"]) for b in card["button_list"]] == [
        ("同意", "approve", 0),
        ("拒绝", "reject", 0),
    ]
    assert card["main_title"] == {"title": "采购合同-2026-001", "desc": "张三 发起了审批，请处理"}
    assert card["horizontal_content_list"] == [
        {"keyname": "发起人", "type": 3, "value": "张三", "userid": "zhangsan"},
        {"keyname": "截止时间", "value": shown_deadline(body["deadline"])},
    ]
    assert card["card_action"] == {
        "type": 1,
        "url": "https://wqbot.example.com/oauth/h5?next=%2Fpages%2Ftask%2Ftask_detail%3Fid%3DT-1001",
    }
    assert card["task_id"] == NotifyCard.get().card_id and card["task_id"].startswith("T-1001-")


def test_sign_card_opens_the_h5_through_oauth(client, store, immediate_queue, fake_wecom):
    post(
        client,
        notification(
            id="wq-sign-1",
            type="sign",
            task_id="T-2002",
            title="劳动合同",
            description=None,
            initiator=None,
            deadline=None,
            url="/pages/sign/sign?id=T-2002",
        ),
    )
    (send,) = fake_wecom.sends
    check_send(send)
    card = send["template_card"]
    link = "https://wqbot.example.com/oauth/h5?next=%2Fpages%2Fsign%2Fsign%3Fid%3DT-2002"
    assert card["card_type"] == "text_notice"
    assert card["card_action"] == {"type": 1, "url": link}
    assert card["jump_list"] == [{"type": 1, "title": "去签署", "url": link}]
    assert card["main_title"] == {"title": "劳动合同"}
    assert card["action_menu"]["action_list"] == [{"text": "在微签中打开", "key": "open"}]  # so it can be updated
    assert "horizontal_content_list" not in card


def test_notice_card_is_information_only(client, store, immediate_queue, fake_wecom):
    long_text = "合同已由全部签署方完成签署，" * 20
    post(
        client,
        notification(
            id="wq-notice-1",
            type="notice",
            task_id=None,
            title="合同已完成",
            description=long_text,
            url=None,
            deadline=None,
            initiator="王五",
        ),
    )
    (send,) = fake_wecom.sends
    check_send(send)
    card = send["template_card"]
    assert card["card_type"] == "text_notice" and "button_list" not in card and "action_menu" not in card
    assert card["card_action"] == {"type": 1, "url": "https://wqbot.example.com/oauth/h5?next=%2F"}
    assert card["sub_title_text"].endswith("…") and len(card["sub_title_text"]) == 160
    assert card["horizontal_content_list"] == [{"keyname": "发起人", "value": "王五"}]
    assert NotifyTask.select().count() == 0  # a notice is no task
    assert card["task_id"].startswith("notice-")


def test_a_long_title_is_cut_for_the_card(client, store, immediate_queue, fake_wecom):
    post(client, notification(title="很" * 60))
    title = fake_wecom.sends[0]["template_card"]["main_title"]["title"]
    assert len(title) == 36 and title.endswith("…")


# -- fan-out --------------------------------------------------------------------------------------
def test_2500_recipients_go_out_in_3_calls(client, store, immediate_queue, fake_wecom):
    people = [f"user{i:04d}" for i in range(2500)]
    assert post(client, notification(recipients=people)).status_code == 202
    assert [len(s["touser"].split("|")) for s in fake_wecom.sends] == [1000, 1000, 500]
    assert fake_wecom.recipients_of_sends() == people
    card_ids = [s["template_card"]["task_id"] for s in fake_wecom.sends]
    assert len(set(card_ids)) == 3  # one WeCom task_id per batch (unique per app)
    for s in fake_wecom.sends:
        check_send(s)
    got = client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
    assert got["status"] == "sent" and len(got["recipients"]) == 2500
    assert {r["status"] for r in got["recipients"]} == {"sent"}
    assert [c.response_code for c in NotifyCard.select().order_by(NotifyCard.batch)] == [
        "RC-send-1",
        "RC-send-2",
        "RC-send-3",
    ]


def test_invaliduser_and_unknown_recipients_are_reported_not_fatal(client, store, immediate_queue, fake_wecom):
    add_member("lisi", "李四")
    add_member("wangwu", "王五")
    add_member("gone", "离职", active=False)
    add_member("Zhaoliu", "赵六")
    fake_wecom.invalid = {"zhaoliu"}  # known here, but WeCom says no (e.g. outside the app's 可见范围)
    post(client, notification(recipients=["lisi", "wangwu", "gone", "nobody", "Zhaoliu"]))
    (send,) = fake_wecom.sends
    assert send["touser"] == "lisi|wangwu|Zhaoliu"
    got = client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
    assert got["status"] == "partial"
    by = {r["userid"]: r["status"] for r in got["recipients"]}
    assert by == {"lisi": "sent", "wangwu": "sent", "gone": "invalid", "nobody": "invalid", "Zhaoliu": "invalid"}


def test_all_invalid_is_failed(client, store, immediate_queue, fake_wecom):
    fake_wecom.invalid = {"lisi", "wangwu"}
    post(client, notification())
    got = client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
    assert got["status"] == "failed" and {r["status"] for r in got["recipients"]} == {"invalid"}


def test_account_keys_map_to_userids(client, store, immediate_queue, fake_wecom):
    add_member("lisi", "李四", account="13800000001")
    add_member("wangwu", "王五")
    post(client, notification(recipients=["13800000001", "wangwu"]))
    assert fake_wecom.sends[0]["touser"] == "lisi|wangwu"
    got = client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
    assert got["recipients"][0] == {"userid": "lisi", "status": "sent", "account": "13800000001"}


def test_a_config_error_fails_the_rest_with_the_reason(client, store, immediate_queue, fake_wecom):
    fake_wecom.fail_sends = [{"errcode": 40056, "errmsg": "invalid agentid"}]
    post(client, notification(recipients=[f"u{i}" for i in range(1500)]))
    assert len(fake_wecom.sends) == 1  # the second batch would fail the same way: not tried
    got = client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()
    assert got["status"] == "failed" and "40056" in got["error"] and "WECOM_AGENT_ID" in got["error"]


def test_a_transient_failure_is_retried_and_resumes_after_the_sent_batches(store, queue, fake_wecom, settings):
    from bot.notify import intake, push
    from bot.notify.request import parse

    intake.accept(parse(notification(recipients=[f"u{i}" for i in range(1500)])))
    # batch 1 goes out, batch 2 gets a 502 (the client does not retry a send that may have arrived)
    fake_wecom.fail_sends = [None, 502]
    with pytest.raises(push.Transient):
        push.run("wq-evt-000123", settings)
    n = Notification.get_by_id("wq-evt-000123")
    assert n.push_attempts == 1 and n.lease_until is None and n.status == "sending"
    assert NotifyRecipient.select().where(NotifyRecipient.status == "sent").count() == 1000
    assert push.run("wq-evt-000123", settings) == "sent"
    sizes = [len(s["touser"].split("|")) for s in fake_wecom.sends]
    assert sizes == [1000, 500, 500]  # batch 1 was not sent again; batch 2 twice, the same message
    assert fake_wecom.sends[1] == fake_wecom.sends[2] and fake_wecom.sends[1]["enable_duplicate_check"] == 1


def test_a_task_closed_before_the_push_sends_nothing(store, queue, fake_wecom, settings):
    from bot.notify import intake, push
    from bot.notify.request import parse

    intake.accept(parse(notification()))
    intake.accept(parse({"id": "wq-close-1", "type": "close", "task_id": "T-1001", "result": "withdrawn"}))
    assert push.run("wq-evt-000123", settings) == "failed"
    assert fake_wecom.sends == []
    assert {r.reason for r in NotifyRecipient.select()} == {"not sent: the task was already withdrawn"}


def test_wecom_disabled_stores_but_does_not_push(store, queue, fake_wecom, settings):
    import dataclasses

    from bot.notify import intake, push
    from bot.notify.request import parse

    intake.accept(parse(notification()))
    assert push.run("wq-evt-000123", dataclasses.replace(settings, wecom_enabled=False)) == "held"
    n = Notification.get()
    assert fake_wecom.sends == [] and n.status == "held" and "开启企业微信 is off" in n.error
    # held, not lost: turned on again, it is queued and sent
    assert push.release_held() == 1
    assert Notification.get().status == "queued"
    assert push.run("wq-evt-000123", settings) == "sent" and len(fake_wecom.sends) == 1


# -- close, deadlines, pending --------------------------------------------------------------------
def test_close_updates_every_card_and_leaves_pending(client, store, immediate_queue, fake_wecom):
    from bot.notify import pending_tasks

    post(client, notification(recipients=[f"u{i}" for i in range(1200)]))
    assert pending_tasks("u7", 10)[1] == 1
    r = post(client, {"id": "wq-close-1", "type": "close", "task_id": "T-1001", "result": "signed"})
    assert r.status_code == 202 and r.json() == {"id": "wq-close-1", "status": "done"}
    assert pending_tasks("u7", 10) == ([], 0)
    assert [(len(u["userids"]), u["response_code"], u["button"]) for u in fake_wecom.updates] == [
        (1000, "RC-send-1", {"replace_name": "已签署"}),
        (200, "RC-send-2", {"replace_name": "已签署"}),
    ]
    assert client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()["status"] == "done"
    # the same close again changes nothing
    post(client, {"id": "wq-close-2", "type": "close", "task_id": "T-1001", "result": "signed"})
    assert len(fake_wecom.updates) == 2


def test_close_of_a_sign_task_replaces_the_card(client, store, immediate_queue, fake_wecom):
    post(client, notification(id="wq-sign-1", type="sign", task_id="T-2002", title="劳动合同"))
    post(client, {"id": "wq-close-1", "type": "close", "task_id": "T-2002", "result": "withdrawn"})
    (u,) = fake_wecom.updates
    assert u["userids"] == ["lisi", "wangwu"] and u["response_code"] == "RC-send-1"
    card = u["template_card"]
    check_card(card)
    assert card["card_type"] == "text_notice" and card["emphasis_content"] == {"title": "已撤销"}
    assert card["task_id"] == fake_wecom.sends[0]["template_card"]["task_id"] and "jump_list" not in card


def test_close_of_an_unknown_task_is_accepted(client, store, queue):
    r = post(
        client, {"id": "wq-close-x", "type": "close", "task_id": "T-404", "result": "approved", "recipients": ["lisi"]}
    )
    assert r.status_code == 202 and r.json()["status"] == "done"
    got = client.get("/api/v1/notifications/wq-close-x", headers=AUTH).json()
    assert got == {
        "id": "wq-close-x",
        "type": "close",
        "status": "done",
        "task_id": "T-404",
        "recipients": [],
        "action": None,
    }


def test_deadline_expiry(client, store, immediate_queue, fake_wecom, settings):
    import time

    from bot.notify import pending_tasks, sweep

    post(client, notification(deadline=deadline_in(days=-1)))
    assert pending_tasks("lisi", 5) == ([], 0)  # past its deadline: not open any more
    assert sweep.expire_due(time.time()) == 1
    assert NotifyTask.get().state == "expired"
    assert [u["button"]["replace_name"] for u in fake_wecom.updates] == ["已过期"]
    assert sweep.expire_due(time.time()) == 0


def test_pending_tasks_contract(client, store, immediate_queue, fake_wecom):
    from bot.notify import pending_tasks

    post(client, notification(id="n1", task_id="T-1", title="一", recipients=["lisi"]))
    post(client, notification(id="n2", type="sign", task_id="T-2", title="二", recipients=["lisi", "wangwu"], url=None))
    post(client, notification(id="n3", type="notice", task_id="T-3", title="三", recipients=["lisi"]))
    post(client, notification(id="n4", task_id="T-4", title="四", recipients=["wangwu"]))
    NotifyTask.update(created_at=NotifyTask.created_at - 100).where(NotifyTask.task_id == "T-1").execute()
    items, total = pending_tasks("lisi", 10)
    assert total == 2
    assert [(i["task_id"], i["type"], i["title"], i["url"]) for i in items] == [
        ("T-2", "sign", "二", None),
        ("T-1", "approve", "一", "/pages/task/task_detail?id=T-1001"),
    ]
    assert items[0]["initiator"] == "zhangsan" and isinstance(items[0]["created_at"], float)
    assert pending_tasks("lisi", 1)[0][0]["task_id"] == "T-2" and pending_tasks("lisi", 1)[1] == 2
    assert pending_tasks("lisi", 0) == ([], 2)
    assert pending_tasks("nobody", 5) == ([], 0)


def test_pending_tasks_query_count_does_not_grow(client, store, immediate_queue, fake_wecom):
    from bot.notify import pending_tasks
    from tests.support import count_queries

    for i in range(12):
        post(client, notification(id=f"n{i}", task_id=f"T-{i}", recipients=["lisi"]))
    with count_queries() as q:
        items, total = pending_tasks("lisi", 8)
    assert total == 12 and len(items) == 8
    assert len(q) <= 2


def test_pending_tasks_start_from_the_members_own_rows(client, store, immediate_queue, fake_wecom):
    """待我处理 reads the member's recipient rows, not every open task in the store: its cost must
    not grow with other members' tasks."""
    from bot.notify.pending import _open_tasks_sql, pending_tasks
    from store import db
    from store.db import is_postgres

    for i in range(3):
        post(client, notification(id=f"n{i}", task_id=f"T-{i}", recipients=["lisi"]))
    if is_postgres():
        # without statistics (a fresh database) PostgreSQL also reached for the state index
        sql = "EXPLAIN " + _open_tasks_sql(True)
        params = ("lisi", "invalid", "pending", "approve", "sign", 0, 8)
        plan = [row[0] for row in db.obj.execute_sql(sql, params)]
        assert any("notify_recipient_userid_task_id" in p for p in plan), plan
        assert not any("notify_task_state" in p for p in plan), plan
        # with fresh statistics, a member with dozens of open tasks in a store of thousands, it
        # hashed the member's rows and scanned every task
        NotifyTask.insert_many(
            [{"task_id": f"X-{i}", "kind": "approve", "title": "x", "notification": f"x{i}"} for i in range(3000)]
        ).execute()
        NotifyRecipient.insert_many(
            [
                {"notification": f"x{i}", "task_id": f"X-{i}", "key": u, "userid": u}
                for i in range(3000)
                for u in ("lisi" if i < 40 else f"m{i % 100}", f"m{(i + 7) % 100}")
            ]
        ).execute()
        db.obj.execute_sql("ANALYZE notify_task")
        db.obj.execute_sql("ANALYZE notify_recipient")
        plan = [row[0] for row in db.obj.execute_sql(sql, params)]
        assert any("notify_recipient_userid_task_id" in p for p in plan), plan
        assert not any("Seq Scan on notify_task" in p or "notify_task_state" in p for p in plan), plan
        # prepared once per connection (store/prepared.py), it may run on a generic plan: that one too
        from store.prepared import _numbered

        db.obj.execute_sql("SET plan_cache_mode = force_generic_plan")
        try:
            db.obj.execute_sql("PREPARE pending_plan AS " + _numbered(_open_tasks_sql(True)))
            execute = "EXPLAIN EXECUTE pending_plan (" + ", ".join(["%s"] * len(params)) + ")"
            plan = [row[0] for row in db.obj.execute_sql(execute, params)]
        finally:
            db.obj.execute_sql("DEALLOCATE pending_plan")
            db.obj.execute_sql("RESET plan_cache_mode")
        assert any("notify_recipient_userid_task_id" in p for p in plan), plan
        assert not any("Seq Scan on notify_task" in p or "notify_task_state" in p for p in plan), plan
        assert pending_tasks("lisi", 8)[1] == 43
        # the counts the 工作台 tile and the digest read: the same path
        from bot.notify.pending import _open_counts_sql, open_counts

        plan = [row[0] for row in db.obj.execute_sql("EXPLAIN " + _open_counts_sql(True), params[:-1])]
        assert any("notify_recipient_userid_task_id" in p for p in plan), plan
        assert not any("Seq Scan on notify_task" in p or "notify_task_state" in p for p in plan), plan
        assert open_counts("lisi") == {"approve": 43, "sign": 0}
        return
    from bot.notify.pending import _open_counts_sql

    for sql, n in ((_open_tasks_sql(False), 7), (_open_counts_sql(False), 6)):  # the list, the tile's counts
        plan = [row[-1] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + sql, ("x",) * n)]
        searches = [p for p in plan if p.startswith(("SEARCH", "SCAN"))]
        assert searches[0].startswith("SEARCH r USING INDEX notify_recipient_userid_task_id"), plan
        assert not any("notify_task_state" in p for p in plan), plan


def test_a_new_approve_reopens_a_task_that_was_over(client, store, immediate_queue, fake_wecom):
    from bot.notify import pending_tasks

    post(client, notification(recipients=["lisi"]))
    post(client, {"id": "c1", "type": "close", "task_id": "T-1001", "result": "rejected"})
    assert pending_tasks("lisi", 5)[1] == 0
    post(client, notification(id="wq-evt-000124", type="sign", recipients=["wangwu"]))  # the next step
    task = NotifyTask.get()
    assert (task.state, task.kind, task.round) == ("pending", "sign", 2)
    assert pending_tasks("wangwu", 5)[1] == 1 and pending_tasks("lisi", 5)[1] == 0
    assert client.get("/api/v1/notifications/wq-evt-000123", headers=AUTH).json()["status"] == "done"
    assert client.get("/api/v1/notifications/wq-evt-000124", headers=AUTH).json()["status"] == "sent"


def test_a_60020_on_message_send_appears_under_recent_errors_with_the_app_page(
    client, store, immediate_queue, fake_wecom
):
    """The console's 最近错误 shows what a push saw that only an operator can fix, with its hint
    naming the console page of the secret message/send used (the app's)."""
    from store.ops import OpsError

    fake_wecom.fail_sends = [{"errcode": 60020, "errmsg": "not allow to access from your ip, from ip: 203.0.113.8"}]
    post(client, notification(recipients=["u1"]))
    (error,) = [e for e in OpsError.select() if e.source == "notify.push"]
    assert "60020" in error.message
    assert error.hint.startswith("add 203.0.113.8 to 企业可信IP under 应用管理 → 自建应用 → 企业可信IP")
