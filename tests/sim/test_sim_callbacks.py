"""The callbacks the emulator makes, received on real loopback URLs and decrypted with wechatpy:
change_contact for every directory change (full and IDs-only shapes, docs/wecom.md), member
events and card taps with their passive replies, the console's URL check, retries."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

from bot.callback.xml import document
from sim import create_app

from .conftest import CORP, make_config


def reply_xml(to: str, msg_type: str, **fields) -> str:
    return document(
        {"ToUserName": to, "FromUserName": CORP, "CreateTime": int(time.time()), "MsgType": msg_type, **fields}
    )


def test_create_user_sends_full_create_user_to_the_contacts_url(live):
    client, sim, app_rx, contacts_rx = live
    r = client.post(
        "/sim/users",
        json={
            "userid": "zhaoliu",
            "name": "赵六",
            "department": [1, 2],
            "position": "测试工程师",
            "mobile": "13800000001",
            "gender": "2",
        },
    )
    assert r.status_code == 201
    cb = r.json()["callbacks"][0]
    assert cb["status"] == 200 and cb["target"] == "contacts" and cb["error"] is None
    (msg,) = contacts_rx.received
    assert not app_rx.received
    assert msg["ToUserName"] == CORP and msg["FromUserName"] == "sys" and msg["MsgType"] == "event"
    assert msg["Event"] == "change_contact" and msg["ChangeType"] == "create_user"
    assert msg["UserID"] == "zhaoliu" and msg["Name"] == "赵六" and msg["Department"] == "1,2"
    assert msg["MainDepartment"] == "1" and msg["IsLeaderInDept"] == "0,0" and msg["Position"] == "测试工程师"
    assert msg["Mobile"] == "13800000001" and msg["Gender"] == "2" and msg["Status"] == "1"
    assert "MsgId" not in msg
    envelope = contacts_rx.raw[0].decode()
    assert f"<ToUserName><![CDATA[{CORP}]]></ToUserName>" in envelope and "<Encrypt>" in envelope


def test_rename_move_and_delete(live):
    client, sim, _, contacts_rx = live
    u = next(iter(sim.directory.users.values()))
    old = u.userid
    r = client.patch(f"/sim/users/{old}", json={"new_userid": "renamed-one"}).json()
    assert r["changed"] == ["userid"]
    msg = contacts_rx.received[-1]
    assert msg["ChangeType"] == "update_user" and msg["UserID"] == old and msg["NewUserID"] == "renamed-one"
    assert sim.directory.user(old) is None and sim.directory.user("renamed-one") is u
    client.patch("/sim/users/renamed-one", json={"department": [3], "position": "经理"})
    msg = contacts_rx.received[-1]
    assert msg["UserID"] == "renamed-one" and msg["Department"] == "3" and msg["Position"] == "经理"
    assert "NewUserID" not in msg
    client.patch("/sim/users/renamed-one", json={"name": "新名字"})
    assert contacts_rx.received[-1]["Name"] == "新名字" and "Department" not in contacts_rx.received[-1]
    client.delete("/sim/users/renamed-one")
    msg = contacts_rx.received[-1]
    assert (
        msg["ChangeType"] == "delete_user"
        and msg["UserID"] == "renamed-one"
        and set(msg) == {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "ChangeType", "UserID"}
    )
    assert client.delete("/sim/users/renamed-one").status_code == 404


def test_departments(live):
    client, sim, _, contacts_rx = live
    r = client.post("/sim/departments", json={"name": "华东销售部", "parentid": 1, "id": 500, "order": 100})
    assert r.status_code == 201
    msg = contacts_rx.received[-1]
    assert (msg["ChangeType"], msg["Id"], msg["Name"], msg["ParentId"], msg["Order"]) == (
        "create_party",
        "500",
        "华东销售部",
        "1",
        "100",
    )
    client.patch("/sim/departments/500", json={"parentid": 2})
    msg = contacts_rx.received[-1]
    assert msg["ChangeType"] == "update_party" and msg["ParentId"] == "2" and "Name" not in msg
    n = len(contacts_rx.received)
    client.patch("/sim/departments/500", json={"order": 5})
    assert len(contacts_rx.received) == n, "an order-only change sends no event"
    assert client.post("/sim/departments", json={"name": "华东销售部", "parentid": 2}).status_code == 409
    member = client.post("/sim/users", json={"userid": "member500", "name": "部门成员", "department": [500]}).json()
    assert member["user"]["department"] == [500]
    refused = client.delete("/sim/departments/500")
    assert refused.status_code == 409 and "members" in refused.json()["message"]
    done = client.delete("/sim/departments/500?move_members_to=2").json()
    assert done["moved_members"] == ["member500"]
    kinds = [(m["ChangeType"], m.get("UserID") or m.get("Id")) for m in contacts_rx.received[-2:]]
    assert kinds == [("update_user", "member500"), ("delete_party", "500")]
    assert contacts_rx.received[-2]["Department"] == "2"
    assert sim.directory.user("member500").department == [2]


def test_ids_only_mode_as_after_2022(live):
    client, sim, _, contacts_rx = live
    client.patch("/sim/config", json={"ids_only_callbacks": True})
    client.post("/sim/users", json={"userid": "idsonly", "name": "只给ID", "department": [2], "mobile": "13900000009"})
    assert contacts_rx.received[-1] == {
        "ToUserName": CORP,
        "FromUserName": "sys",
        "CreateTime": contacts_rx.received[-1]["CreateTime"],
        "MsgType": "event",
        "Event": "change_contact",
        "ChangeType": "create_user",
        "UserID": "idsonly",
        "Department": "2",
    }
    n = len(contacts_rx.received)
    assert client.patch("/sim/users/idsonly", json={"name": "改名不通知"}).json()["callbacks"] == []
    assert len(contacts_rx.received) == n
    client.patch("/sim/users/idsonly", json={"department": [2, 3]})
    assert contacts_rx.received[-1]["Department"] == "2,3" and "Name" not in contacts_rx.received[-1]
    client.post("/sim/departments", json={"name": "新部门", "parentid": 1, "id": 600})
    assert set(contacts_rx.received[-1]) >= {"Id", "ParentId"} and "Name" not in contacts_rx.received[-1]
    n = len(contacts_rx.received)
    client.patch("/sim/departments/600", json={"name": "改名"})
    assert len(contacts_rx.received) == n
    # per request override back to full fields
    client.patch("/sim/users/idsonly?ids_only=0", json={"position": "专员"})
    assert contacts_rx.received[-1]["Position"] == "专员"


def test_without_a_contacts_url_change_contact_goes_to_the_app_url(receivers):
    app_rx, contacts_rx = receivers
    app_rx.clear()
    contacts_rx.clear()
    app = create_app(make_config(callback_url=app_rx.url))
    with TestClient(app) as client:
        client.post("/sim/users", json={"userid": "toapp", "name": "去应用", "department": [1]})
    assert app_rx.received[-1]["ChangeType"] == "create_user" and not contacts_rx.received
    assert b"<AgentID>" in app_rx.raw[-1]


def test_silent_changes_send_nothing(live):
    client, sim, _, contacts_rx = live
    r = client.post("/sim/users?callback=0", json={"userid": "quiet", "name": "悄悄", "department": [1]})
    assert r.json()["callbacks"] == [] and not contacts_rx.received and sim.directory.user("quiet")


def test_member_events_and_passive_replies(live):
    client, sim, app_rx, _ = live
    u = next(u for u in sim.directory.users.values() if u.status == 1)
    app_rx.reply = lambda m: reply_xml(
        m["FromUserName"], "text", Content=f"收到：{m.get('EventKey') or m.get('Content')}"
    )
    r = client.post("/sim/send", json={"userid": u.userid, "type": "click", "key": "pending"}).json()
    msg = app_rx.received[-1]
    assert (msg["MsgType"], msg["Event"], msg["EventKey"], msg["FromUserName"], msg["AgentID"]) == (
        "event",
        "click",
        "pending",
        u.userid,
        str(sim.cfg.agent_id),
    )
    assert r["status"] == 200 and r["reply_fields"]["Content"] == "收到：pending" and r["reply_error"] is None
    assert r["effect"] == f"{u.userid} sees a text reply"
    seen = client.get("/sim/messages", params={"userid": u.userid}).json()["messages"]
    assert seen[-1]["via"] == "passive_reply" and seen[-1]["content"]["Content"] == "收到：pending"
    r = client.post("/sim/send", json={"userid": u.userid, "type": "text", "content": "待办"}).json()
    msg = app_rx.received[-1]
    assert msg["MsgType"] == "text" and msg["Content"] == "待办" and msg["MsgId"].isdigit()
    app_rx.reply = None
    r = client.post("/sim/send", json={"userid": u.userid, "type": "enter_agent"}).json()
    assert app_rx.received[-1]["Event"] == "enter_agent" and r["reply"] is None and r["status"] == 200
    assert client.post("/sim/send", json={"userid": "ghost", "type": "click", "key": "x"}).status_code == 404
    assert client.post("/sim/send", json={"userid": u.userid, "type": "dance"}).status_code == 400


def test_bad_passive_reply_signature_is_reported(live):
    client, sim, app_rx, _ = live
    u = next(u for u in sim.directory.users.values() if u.status == 1)
    from wechatpy.enterprise.crypto import WeChatCrypto

    original = app_rx.crypto
    app_rx.crypto = _ReplyWith(original, WeChatCrypto("OtherToken", sim.cfg.aes_key, CORP))
    app_rx.reply = lambda m: reply_xml(m["FromUserName"], "text", Content="x")
    try:
        r = client.post("/sim/send", json={"userid": u.userid, "type": "click", "key": "help"}).json()
    finally:
        app_rx.crypto = original
    assert r["status"] == 200 and r["reply"] is None and "InvalidSignature" in r["reply_error"]


class _ReplyWith:
    """Decrypts with the right keys but signs replies with another Token."""

    def __init__(self, good, bad):
        self.good, self.bad = good, bad

    def decrypt_message(self, *a):
        return self.good.decrypt_message(*a)

    def encrypt_message(self, *a):
        return self.bad.encrypt_message(*a)


def button_card(task_id: str) -> dict:
    return {
        "card_type": "button_interaction",
        "main_title": {"title": "采购合同"},
        "task_id": task_id,
        "button_list": [{"text": "同意", "key": "approve"}, {"text": "拒绝", "key": "reject", "style": 2}],
    }


def test_card_tap_carries_task_and_fresh_response_code(live):
    client, sim, app_rx, _ = live
    tok = client.get("/cgi-bin/gettoken", params={"corpid": CORP, "corpsecret": sim.cfg.app_secret}).json()[
        "access_token"
    ]
    people = [u.userid for u in sim.directory.users.values() if u.status == 1][:3]
    sent = client.post(
        "/cgi-bin/message/send",
        params={"access_token": tok},
        json={
            "touser": "|".join(people),
            "msgtype": "template_card",
            "agentid": sim.cfg.agent_id,
            "template_card": button_card("T-1001"),
        },
    ).json()
    assert sent["errcode"] == 0
    app_rx.reply = lambda m: reply_xml(m["FromUserName"], "update_button", Button={"ReplaceName": "已同意"})
    r = client.post("/sim/send", json={"userid": people[0], "type": "card", "task_id": "T-1001", "key": "approve"})
    assert r.status_code == 200
    msg = app_rx.received[-1]
    assert (msg["Event"], msg["EventKey"], msg["TaskId"], msg["CardType"]) == (
        "template_card_event",
        "approve",
        "T-1001",
        "button_interaction",
    )
    code = msg["ResponseCode"]
    assert code and code != sent["response_code"]
    assert r.json()["effect"] == f"card T-1001 of {people[0]} now shows '已同意'"
    card = client.get("/sim/cards/T-1001").json()
    assert (
        card["copies"][people[0]]["state"] == "button_replaced"
        and card["copies"][people[0]]["updated_by"] == "passive_reply"
    )
    # the tapped card is greyed out: a second tap is refused unless forced (a race)
    again = client.post("/sim/send", json={"userid": people[0], "type": "card", "task_id": "T-1001", "key": "approve"})
    assert again.status_code == 409 and "已同意" in again.json()["message"]
    forced = client.post(
        "/sim/send", json={"userid": people[0], "type": "card", "task_id": "T-1001", "key": "reject", "force": True}
    )
    assert forced.status_code == 200 and app_rx.received[-1]["EventKey"] == "reject"
    # the callback's code updates everyone else's card, once
    upd = {
        "agentid": sim.cfg.agent_id,
        "response_code": code,
        "userids": people[1:],
        "button": {"replace_name": f"已由 {people[0]} 同意"},
    }
    assert (
        client.post("/cgi-bin/message/update_template_card", params={"access_token": tok}, json=upd).json()["errcode"]
        == 0
    )
    assert client.get("/sim/cards/T-1001").json()["all_updated"] is True
    assert (
        client.post("/cgi-bin/message/update_template_card", params={"access_token": tok}, json=upd).json()["errcode"]
        == 40058
    )
    bad_key = client.post(
        "/sim/send", json={"userid": people[1], "type": "card", "task_id": "T-1001", "key": "x", "force": True}
    )
    assert bad_key.status_code == 400 and "approve" in bad_key.json()["message"]
    stranger = [u.userid for u in sim.directory.users.values() if u.status == 1][5]
    assert client.post("/sim/send", json={"userid": stranger, "type": "card", "task_id": "T-1001"}).status_code == 404


def test_url_verification(live):
    client, sim, app_rx, contacts_rx = live
    ok = client.post("/sim/verify-url", json={"target": "app"}).json()
    assert ok["ok"] is True and ok["status"] == 200 and ok["error"] is None
    assert client.post("/sim/verify-url", json={"target": "contacts"}).json()["ok"] is True
    app_rx.echo_override = '"quoted"'
    bad = client.post("/sim/verify-url", json={"target": "app"}).json()
    assert bad["ok"] is False and "40057" in bad["error"]


def test_unreachable_url_is_retried_then_reported():
    app = create_app(
        make_config(callback_url="http://127.0.0.1:9/cb", callback_retries=2, callback_retry_interval=0.01)
    )
    with TestClient(app) as client:
        r = client.post("/sim/users", json={"userid": "nobody-listens", "name": "无人", "department": [1]}).json()
        cb = r["callbacks"][0]
        assert cb["attempts"] == 3 and cb["status"] is None and "ConnectError" in cb["error"]
        log = client.get("/sim/callbacks").json()
        assert log["callbacks"][-1]["event"] == "change_contact:create_user"
        assert client.delete("/sim/callbacks").json() == {"cleared": True}
    no_url = create_app(make_config(callback_url=""))
    with TestClient(no_url) as client:
        cb = client.post("/sim/users", json={"userid": "x1", "name": "无地址", "department": [1]}).json()["callbacks"][
            0
        ]
        assert cb["status"] is None and "no callback URL" in cb["error"]
