"""Contract tests of the emulator's server API against docs/wecom.md (server API, quotas, error codes): tokens, directory reads,
list_id paging, quotas, OAuth codes, messages and cards, menus, agent, JS-SDK tickets."""

from __future__ import annotations

import pytest

from sim.directory import ROOT, Directory

from .conftest import make_config


def gettoken(client, cfg, secret=None, corpid=None):
    return client.get(
        "/cgi-bin/gettoken", params={"corpid": corpid or cfg.corp_id, "corpsecret": secret or cfg.app_secret}
    ).json()


# -- tokens ---------------------------------------------------------------------------------------
def test_gettoken_checks_corpid_and_secret(client, cfg):
    assert gettoken(client, cfg, corpid="wwother")["errcode"] == 40013
    assert gettoken(client, cfg, secret="wrong")["errcode"] == 40001
    assert client.get("/cgi-bin/gettoken", params={"corpsecret": "x"}).json()["errcode"] == 41002
    assert client.get("/cgi-bin/gettoken", params={"corpid": cfg.corp_id}).json()["errcode"] == 41004
    r = gettoken(client, cfg)
    assert r["errcode"] == 0 and r["errmsg"] == "ok" and r["expires_in"] == 7200 and len(r["access_token"]) >= 64


def test_same_token_within_validity_and_separate_per_secret(client, cfg):
    a1, a2 = gettoken(client, cfg), gettoken(client, cfg)
    c1 = gettoken(client, cfg, secret=cfg.contacts_secret)
    assert a1["access_token"] == a2["access_token"] != c1["access_token"]


def test_token_missing_invalid_and_expired(client, sim, cfg):
    assert client.get("/cgi-bin/user/get", params={"userid": "x"}).json()["errcode"] == 41001
    assert client.get("/cgi-bin/user/get", params={"userid": "x", "access_token": "nope"}).json()["errcode"] == 40014
    sim.cfg.token_expires_in = 30
    tok = gettoken(client, cfg)
    assert tok["expires_in"] == 30
    first = next(iter(sim.directory.users.values())).userid
    ok = client.get("/cgi-bin/user/get", params={"userid": first, "access_token": tok["access_token"]}).json()
    assert ok["errcode"] == 0
    sim.clock.advance(31)
    expired = client.get("/cgi-bin/user/get", params={"userid": first, "access_token": tok["access_token"]}).json()
    assert expired["errcode"] == 42001 and "access_token expired" in expired["errmsg"]
    fresh = gettoken(client, cfg)
    assert fresh["access_token"] != tok["access_token"]
    again = client.get("/cgi-bin/user/get", params={"userid": first, "access_token": fresh["access_token"]}).json()
    assert again["errcode"] == 0


def test_control_api_expires_tokens(client, cfg):
    tok = gettoken(client, cfg)["access_token"]
    assert client.post("/sim/tokens/expire", json={"kind": "app"}).json() == {"expired": 1}
    assert (
        client.get("/cgi-bin/agent/get", params={"access_token": tok, "agentid": cfg.agent_id}).json()["errcode"]
        == 42001
    )


# -- directory reads ----------------------------------------------------------------------------------
def test_department_apis(wx, sim):
    d = sim.directory
    full = wx.call("department/list")["department"]
    assert len(full) == len(d.departments) and full[0]["id"] == ROOT and full[0]["parentid"] == 0
    assert set(full[0]) == {"id", "name", "name_en", "parentid", "order", "department_leader"}
    simple = wx.call("department/simplelist", kind="contacts")["department_id"]
    assert {x["id"] for x in simple} == set(d.departments) and set(simple[0]) == {"id", "parentid", "order"}
    child = d.children[ROOT][0]
    sub = wx.call("department/list", id=child)["department"]
    assert {x["id"] for x in sub} == set(d.subtree(child))
    one = wx.call("department/get", id=child)["department"]
    assert one["id"] == child and one["department_leader"] == d.leaders(child)
    assert wx.call("department/get", id=99999)["errcode"] == 60123


def test_user_apis(wx, sim):
    d = sim.directory
    u = next(u for u in d.users.values() if len(u.department) > 1)
    got = wx.call("user/get", userid=u.userid.upper())  # userids are case-insensitive
    assert got["errcode"] == 0 and got["userid"] == u.userid and got["department"] == u.department
    assert got["gender"] in ("1", "2") and got["mobile"] == u.mobile and got["status"] == u.status
    assert wx.call("user/get", userid="nobody-here")["errcode"] == 60111
    assert wx.call("user/get")["errcode"] == 41009
    dept = u.department[0]
    simple = wx.call("user/simplelist", department_id=dept)["userlist"]
    assert u.userid in {x["userid"] for x in simple} and set(simple[0]) == {"userid", "name", "department"}
    everyone = wx.call("user/list", department_id=ROOT, fetch_child=1)["userlist"]
    assert len(everyone) == len(d.users) and "english_name" in everyone[0]
    only_root = wx.call("user/simplelist", department_id=ROOT)["userlist"]
    assert len(only_root) == len(d.members[ROOT]) < len(everyone)
    assert wx.call("user/getuserid", json={"mobile": u.mobile})["userid"] == u.userid
    assert wx.call("user/getuserid", json={"mobile": "13000000000"})["errcode"] == 46004
    assert wx.call("user/get_userid_by_email", json={"email": u.email})["userid"] == u.userid


def test_privacy_switch_hides_contact_fields_from_the_app_only(wx, sim):
    u = next(iter(sim.directory.users.values()))
    sim.cfg.hide_private = True
    app_view = wx.call("user/get", userid=u.userid)
    for f in ("mobile", "email", "gender", "avatar", "biz_mail", "address", "qr_code"):
        assert f not in app_view
    assert app_view["name"] == u.name and app_view["department"] == u.department
    assert "mobile" not in wx.call("user/list", department_id=ROOT, fetch_child=1)["userlist"][0]
    assert wx.call("user/get", kind="contacts", userid=u.userid)["mobile"] == u.mobile


def test_contacts_secret_from_a_new_ip_reads_ids_only(wx, sim):
    sim.cfg.contacts_new_ip = True
    u = next(iter(sim.directory.users.values()))
    for path, params in (
        ("user/get", {"userid": u.userid}),
        ("department/list", {}),
        ("department/get", {"id": 1}),
        ("user/list", {"department_id": 1}),
        ("user/simplelist", {"department_id": 1}),
    ):
        assert wx.call(path, kind="contacts", **params)["errcode"] == 48009, path
    assert wx.call("department/simplelist", kind="contacts")["errcode"] == 0
    assert wx.call("user/list_id", kind="contacts", json={"limit": 10})["errcode"] == 0
    assert wx.call("user/get", userid=u.userid)["errcode"] == 0  # the app secret is not affected


def test_visible_range_limits_the_app(wx, sim):
    d = sim.directory
    child = d.children[ROOT][0]
    sim.cfg.visible_departments = (child,)
    sim.invalidate_visibility()
    inside = set(d.subtree(child))
    listed = {x["id"] for x in wx.call("department/list")["department"]}
    assert listed == inside
    outsider = next(u for u in d.users.values() if not set(u.department) & inside)
    assert wx.call("user/get", userid=outsider.userid)["errcode"] == 60011
    assert wx.call("department/get", id=ROOT)["errcode"] == 60011
    assert wx.call("user/get", kind="contacts", userid=outsider.userid)["errcode"] == 0


# -- user/list_id paging ----------------------------------------------------------------------------
def test_list_id_pages_to_the_end(client, cfg):
    from starlette.testclient import TestClient

    from sim import create_app

    big = create_app(make_config(users=300, departments=25))
    with TestClient(big) as c:
        tok = gettoken(c, cfg, secret=cfg.contacts_secret)["access_token"]
        rows, cursor, pages = [], "", 0
        while True:
            body = {"limit": 7} if not cursor else {"cursor": cursor, "limit": 7}
            r = c.post("/cgi-bin/user/list_id", params={"access_token": tok}, json=body).json()
            assert r["errcode"] == 0 and len(r["dept_user"]) <= 7
            rows += r["dept_user"]
            pages += 1
            cursor = r["next_cursor"]
            if not cursor:
                break
        d = big.state.sim.directory
        expected = [(u.userid, dep) for u in d.users.values() for dep in u.department]
        assert [(x["userid"], x["department"]) for x in rows] == expected
        assert pages == -(-len(expected) // 7)


def test_list_id_cursor_survives_changes_between_pages(wx, sim, client):
    first = wx.call("user/list_id", kind="contacts", json={"limit": 10})
    seen = {(x["userid"], x["department"]) for x in first["dept_user"]}
    client.post("/sim/users?callback=0", json={"userid": "newcomer", "name": "新人", "department": [1]})
    victim = list(sim.directory.users.values())[-5].userid
    client.delete(f"/sim/users/{victim}?callback=0")
    cursor, rest = first["next_cursor"], []
    while cursor:
        r = wx.call("user/list_id", kind="contacts", json={"cursor": cursor, "limit": 10})
        rest += r["dept_user"]
        cursor = r["next_cursor"]
    pairs = [(x["userid"], x["department"]) for x in rest]
    assert not seen & set(pairs) and len(pairs) == len(set(pairs))
    assert ("newcomer", 1) in pairs and victim not in {p[0] for p in pairs}


def test_list_id_rules(wx):
    assert wx.call("user/list_id", json={"limit": 10})["errcode"] == 48002  # app secret: not allowed
    for bad in (0, 10001, "10"):
        assert wx.call("user/list_id", kind="contacts", json={"limit": bad})["errcode"] == 40058
    assert wx.call("user/list_id", kind="contacts", json={"cursor": "garbage", "limit": 5})["errcode"] == 40058
    whole = wx.call("user/list_id", kind="contacts", json={})
    assert whole["errcode"] == 0 and whole["next_cursor"] == ""


# -- conventions ------------------------------------------------------------------------------------
def test_post_api_via_get_and_bad_json(client, cfg, wx):
    tok = wx.get("contacts")
    assert client.get("/cgi-bin/user/list_id", params={"access_token": tok}).json()["errcode"] == 40058
    r = client.post("/cgi-bin/user/list_id", params={"access_token": tok}, content=b"{not json").json()
    assert r["errcode"] == 40058
    assert client.get("/cgi-bin/no/such/api", params={"access_token": tok}).status_code == 404


def test_errmsg_carries_hint_and_ip_like_wecom(client):
    r = client.get("/cgi-bin/user/get", params={"userid": "x", "access_token": "nope"}).json()
    assert (
        "hint: [" in r["errmsg"] and "more info at https://open.work.weixin.qq.com/devtool/query?e=40014" in r["errmsg"]
    )


# -- quotas -----------------------------------------------------------------------------------------
def test_per_api_quota_answers_45009_then_recovers(client, sim, wx):
    r = client.patch("/sim/quotas", json={"apis": {"user/get": {"per_minute": 3}}})
    assert r.status_code == 200
    u = next(iter(sim.directory.users.values())).userid
    tok = wx.get()
    codes = [
        client.get("/cgi-bin/user/get", params={"access_token": tok, "userid": u}).json()["errcode"] for _ in range(5)
    ]
    assert codes == [0, 0, 0, 45009, 45009]
    # another API has its own window
    assert client.get("/cgi-bin/department/simplelist", params={"access_token": tok}).json()["errcode"] == 0
    sim.clock.advance(59)
    assert client.get("/cgi-bin/user/get", params={"access_token": tok, "userid": u}).json()["errcode"] == 45009
    sim.clock.advance(2)
    assert client.get("/cgi-bin/user/get", params={"access_token": tok, "userid": u}).json()["errcode"] == 0
    snap = client.get("/sim/quotas").json()
    assert snap["refused"] == 3 and snap["apis"]["user/get"]["minute_count"] == 1


def test_default_quota_is_protocols_10000_per_minute(sim):
    assert sim.quotas.limits("user/get") == (10000, 150000)
    assert sim.quotas.limits("get_jsapi_ticket")[1] == 400 and sim.quotas.limits("ticket/get")[1] == 100


def test_debug_mode_allows_5_per_minute(client, wx):
    tok = wx.get()
    codes = [
        client.get("/cgi-bin/department/simplelist", params={"access_token": tok, "debug": "1"}).json()["errcode"]
        for _ in range(6)
    ]
    assert codes == [0] * 5 + [45009]


# -- OAuth / QR-login codes -------------------------------------------------------------------------
def test_codes_are_single_use_and_expire(client, sim, wx):
    u = next(iter(sim.directory.users.values()))
    code = client.post("/sim/oauth/code", json={"userid": u.userid}).json()["code"]
    first = wx.call("auth/getuserinfo", code=code)
    assert first == {"errcode": 0, "errmsg": "ok", "userid": u.userid}
    assert wx.call("auth/getuserinfo", code=code)["errcode"] == 40029
    late = client.post("/sim/oauth/code", json={"userid": u.userid}).json()["code"]
    sim.clock.advance(301)
    assert wx.call("auth/getuserinfo", code=late)["errcode"] == 40029
    assert wx.call("auth/getuserinfo", code="never-issued")["errcode"] == 40029


def test_non_member_privateinfo_and_wrong_secret(client, sim, wx):
    outsider = client.post("/sim/oauth/code", json={"openid": "oABC"}).json()["code"]
    assert wx.call("auth/getuserinfo", code=outsider) == {"errcode": 0, "errmsg": "ok", "openid": "oABC"}
    u = next(iter(sim.directory.users.values()))
    code = client.post("/sim/oauth/code", json={"userid": u.userid, "scope": "snsapi_privateinfo"}).json()["code"]
    info = wx.call("auth/getuserinfo", code=code)
    assert info["userid"] == u.userid and info["expires_in"] == 1800 and info["user_ticket"]
    detail = wx.call("auth/getuserdetail", json={"user_ticket": info["user_ticket"]})
    assert detail["mobile"] == u.mobile and detail["email"] == u.email and detail["userid"] == u.userid
    assert wx.call("auth/getuserdetail", json={"user_ticket": "forged"})["errcode"] == 40058
    c2 = client.post("/sim/oauth/code", json={"userid": u.userid}).json()["code"]
    assert wx.call("auth/getuserinfo", kind="contacts", code=c2)["errcode"] == 50001
    assert wx.call("auth/getuserinfo", code=c2)["errcode"] == 0  # the wrong secret did not burn the code
    old = client.post("/sim/oauth/code", json={"userid": u.userid}).json()["code"]
    legacy = wx.call("user/getuserinfo", code=old)
    assert legacy["UserId"] == u.userid and "userid" not in legacy


def test_getuserinfo_with_a_valid_code_is_exempt_from_quota(client, sim, wx):
    client.patch("/sim/quotas", json={"apis": {"auth/getuserinfo": {"per_minute": 1}}})
    u = next(iter(sim.directory.users.values()))
    for _ in range(3):
        code = client.post("/sim/oauth/code", json={"userid": u.userid}).json()["code"]
        assert wx.call("auth/getuserinfo", code=code)["errcode"] == 0
    assert wx.call("auth/getuserinfo", code="bad1")["errcode"] == 40029
    assert wx.call("auth/getuserinfo", code="bad2")["errcode"] == 45009


# -- message/send --------------------------------------------------------------------------------------
def send(wx, cfg, **body):
    body.setdefault("agentid", cfg.agent_id)
    body.setdefault("msgtype", "text")
    if body["msgtype"] == "text":
        body.setdefault("text", {"content": "你好"})
    return wx.call("message/send", json=body)


def button_card(task_id="T-1001"):
    return {
        "card_type": "button_interaction",
        "main_title": {"title": "采购合同-2026-001"},
        "task_id": task_id,
        "button_list": [{"text": "同意", "style": 1, "key": "approve"}, {"text": "拒绝", "style": 2, "key": "reject"}],
    }


def test_send_reports_invalid_users_lowercased(wx, cfg, sim, client):
    users = [u.userid for u in sim.directory.users.values() if u.status == 1][:2]
    r = send(wx, cfg, touser="|".join(users + ["GhostOne", "ghost2"]))
    assert r["errcode"] == 0 and r["invaliduser"] == "ghostone|ghost2" and r["msgid"]
    assert "response_code" not in r
    msgs = client.get("/sim/messages", params={"userid": users[0]}).json()["messages"]
    assert msgs[-1]["msgid"] == r["msgid"] and msgs[-1]["content"] == {"content": "你好"}


def test_all_invalid_recipients_is_81013_and_empty_is_82001(wx, cfg):
    assert send(wx, cfg, touser="ghost1|ghost2")["errcode"] == 81013
    assert send(wx, cfg, touser="")["errcode"] == 82001


def test_thousand_recipient_cap(wx, cfg, sim):
    real = [u.userid for u in sim.directory.users.values()]
    names = real + [f"ghost{i}" for i in range(1000 - len(real))]
    disabled = [u.userid for u in sim.directory.users.values() if u.status == 2]
    ok = send(wx, cfg, touser="|".join(names))
    assert ok["errcode"] == 0 and len(ok["invaliduser"].split("|")) == 1000 - len(real) + len(disabled)
    over = send(wx, cfg, touser="|".join(names + ["one-more"]))
    assert over["errcode"] == 40032


def test_toparty_and_all(wx, cfg, sim, client):
    d = sim.directory
    child = d.children[ROOT][0]
    r = send(wx, cfg, toparty=f"{child}|99999")
    assert r["errcode"] == 0 and r["invalidparty"] == "99999"
    msg = client.get("/sim/messages").json()["messages"][-1]
    expected = {u.userid for u in d.users_in(d.subtree(child)) if u.status in (1, 4)}
    assert msg["delivered_count"] == len(expected)
    everyone = send(wx, cfg, touser="@all")
    assert everyone["errcode"] == 0


def test_duplicate_check_sends_once(wx, cfg, sim, client):
    u = next(iter(sim.directory.users.values())).userid
    body = dict(touser=u, enable_duplicate_check=1, duplicate_check_interval=600, text={"content": "提醒一次"})
    a, b = send(wx, cfg, **body), send(wx, cfg, **body)
    assert a["msgid"] == b["msgid"]
    assert len(client.get("/sim/messages", params={"userid": u}).json()["messages"]) == 1
    sim.clock.advance(601)
    assert send(wx, cfg, **body)["msgid"] != a["msgid"]
    without = [send(wx, cfg, touser=u, text={"content": "x"})["msgid"] for _ in range(2)]
    assert without[0] != without[1]


def test_message_payload_rules(wx, cfg, sim):
    u = next(iter(sim.directory.users.values())).userid
    assert send(wx, cfg, touser=u, text={"content": ""})["errcode"] == 44004
    assert send(wx, cfg, touser=u, text={"content": "字" * 700})["errcode"] == 45002
    assert send(wx, cfg, touser=u, msgtype="bogus")["errcode"] == 40008
    assert send(wx, cfg, touser=u, agentid=999)["errcode"] == 301002
    assert send(wx, cfg, touser=u, msgtype="news", news={"articles": []})["errcode"] == 45008
    assert (
        wx.call(
            "message/send",
            kind="contacts",
            json={"touser": u, "msgtype": "text", "agentid": cfg.agent_id, "text": {"content": "x"}},
        )["errcode"]
        == 48002
    )


def test_cards_get_a_response_code_and_need_a_callback_url(wx, cfg, sim):
    users = [u.userid for u in sim.directory.users.values() if u.status == 1][:3]
    r = send(wx, cfg, touser="|".join(users), msgtype="template_card", template_card=button_card())
    assert r["errcode"] == 0 and r["response_code"]
    notice = {
        "card_type": "text_notice",
        "main_title": {"title": "已签署"},
        "card_action": {"type": 1, "url": "https://x"},
    }
    r2 = send(wx, cfg, touser=users[0], msgtype="template_card", template_card=notice)
    assert r2["errcode"] == 0 and "response_code" not in r2
    no_task = button_card()
    del no_task["task_id"]
    assert send(wx, cfg, touser=users[0], msgtype="template_card", template_card=no_task)["errcode"] == 42014
    assert (
        send(wx, cfg, touser=users[0], msgtype="template_card", template_card={**notice, "card_action": None})[
            "errcode"
        ]
        == 42045
    )
    sim.cfg.callback_url = ""
    assert send(wx, cfg, touser=users[0], msgtype="template_card", template_card=button_card("T-2"))["errcode"] == 43012


def test_update_template_card_codes_are_single_use(wx, cfg, sim, client):
    users = [u.userid for u in sim.directory.users.values() if u.status == 1][:3]
    r = send(wx, cfg, touser="|".join(users), msgtype="template_card", template_card=button_card("T-7"))
    code = r["response_code"]
    upd = {
        "agentid": cfg.agent_id,
        "response_code": code,
        "userids": [users[0], "ghost"],
        "button": {"replace_name": "已同意"},
    }
    first = wx.call("message/update_template_card", json=upd)
    assert first == {"errcode": 0, "errmsg": "ok", "invaliduser": ["ghost"]}
    assert wx.call("message/update_template_card", json=upd)["errcode"] == 40058
    card = client.get("/sim/cards/T-7").json()
    assert (
        card["copies"][users[0]]["state"] == "button_replaced" and card["copies"][users[0]]["replace_name"] == "已同意"
    )
    assert card["all_updated"] is False and sorted(card["not_updated"]) == sorted(users[1:])
    tap = client.post("/sim/send", json={"userid": users[1], "type": "card", "task_id": "T-7", "key": "approve"}).json()
    atall = {
        "agentid": cfg.agent_id,
        "response_code": tap["fields"]["ResponseCode"],
        "atall": 1,
        "button": {"replace_name": "已由他人处理"},
    }
    assert wx.call("message/update_template_card", json=atall)["errcode"] == 0
    assert client.get("/sim/cards/T-7").json()["all_updated"] is True
    assert client.get("/sim/cards").json()["cards"][0]["all_updated"] is True


def test_update_template_card_rules(wx, cfg, sim):
    users = [u.userid for u in sim.directory.users.values() if u.status == 1][:2]
    r = send(wx, cfg, touser="|".join(users), msgtype="template_card", template_card=button_card("T-9"))
    base = {"agentid": cfg.agent_id, "response_code": r["response_code"], "userids": users}
    assert (
        wx.call(
            "message/update_template_card", json={**base, "response_code": "forged", "button": {"replace_name": "x"}}
        )["errcode"]
        == 40058
    )
    assert wx.call("message/update_template_card", json=base)["errcode"] == 40063
    sim.clock.advance(sim.cfg.response_code_ttl + 1)
    assert wx.call("message/update_template_card", json={**base, "button": {"replace_name": "x"}})["errcode"] == 40058


def test_same_task_id_is_not_shown_twice(wx, cfg, sim, client):
    users = [u.userid for u in sim.directory.users.values() if u.status == 1][:4]
    send(wx, cfg, touser="|".join(users[:2]), msgtype="template_card", template_card=button_card("T-B"))
    second = send(wx, cfg, touser="|".join(users[1:]), msgtype="template_card", template_card=button_card("T-B"))
    assert second["errcode"] == 0
    card = client.get("/sim/cards/T-B").json()
    assert sorted(card["copies"]) == sorted(users) and card["recipients"] == 4
    last = client.get("/sim/messages", params={"task_id": "T-B"}).json()["messages"][-1]
    assert last["already_had_task"] == [users[1]]


def test_member_message_rate_drops_silently(wx, cfg, sim, client):
    sim.cfg.member_messages_per_minute = 3
    u = next(iter(sim.directory.users.values())).userid
    results = [send(wx, cfg, touser=u, text={"content": f"第{i}条"}) for i in range(5)]
    assert all(r["errcode"] == 0 for r in results)
    assert len(client.get("/sim/messages", params={"userid": u}).json()["messages"]) == 3


def test_recall(wx, cfg, sim):
    u = next(iter(sim.directory.users.values())).userid
    msgid = send(wx, cfg, touser=u)["msgid"]
    assert wx.call("message/recall", json={"msgid": msgid})["errcode"] == 0
    old = send(wx, cfg, touser=u, text={"content": "old"})["msgid"]
    sim.clock.advance(24 * 3600 + 1)
    assert wx.call("message/recall", json={"msgid": old})["errcode"] == 42052


# -- menus, agent, tickets ------------------------------------------------------------------------------
MENU = {
    "button": [
        {"type": "click", "name": "待我处理", "key": "pending"},
        {"type": "view", "name": "进入微签", "url": "https://wqbot.example.com/oauth/h5"},
        {"name": "更多", "sub_button": [{"type": "click", "name": "帮助", "key": "help"}]},
    ]
}


def test_menu_lifecycle_and_rules(wx, cfg, client):
    aid = cfg.agent_id
    assert wx.call("menu/get", agentid=aid)["errcode"] == 46003
    assert wx.call("menu/create", json=MENU, agentid=aid)["errcode"] == 0
    got = wx.call("menu/get", agentid=aid)
    assert got["button"] == MENU["button"]
    assert client.get("/sim/menu").json()["menu"] == {"button": MENU["button"]}
    four = {"button": MENU["button"] + [{"type": "click", "name": "x", "key": "x"}]}
    assert wx.call("menu/create", json=four, agentid=aid)["errcode"] == 40016
    long_name = {"button": [{"type": "click", "name": "一二三四五六", "key": "k"}]}
    assert wx.call("menu/create", json=long_name, agentid=aid)["errcode"] == 40018
    six = {
        "button": [{"name": "子", "sub_button": [{"type": "click", "name": str(i), "key": str(i)} for i in range(6)]}]
    }
    assert wx.call("menu/create", json=six, agentid=aid)["errcode"] == 40023
    bad_type = {"button": [{"type": "tap", "name": "x", "key": "x"}]}
    assert wx.call("menu/create", json=bad_type, agentid=aid)["errcode"] == 40017
    assert wx.call("menu/create", json=MENU, agentid=999)["errcode"] == 301002
    assert wx.call("menu/delete", agentid=aid)["errcode"] == 0
    assert wx.call("menu/get", agentid=aid)["errcode"] == 46003


def test_agent_get(wx, cfg):
    a = wx.call("agent/get", agentid=cfg.agent_id)
    assert a["agentid"] == cfg.agent_id and a["redirect_domain"] == "wqbot.example.com"
    assert a["allow_partys"] == {"partyid": [1]} and a["close"] == 0
    assert wx.call("agent/get", kind="contacts", agentid=cfg.agent_id)["errcode"] == 48002


def test_jsapi_tickets(wx):
    t1, t2 = wx.call("get_jsapi_ticket"), wx.call("get_jsapi_ticket")
    assert t1["ticket"] == t2["ticket"] and t1["expires_in"] <= 7200
    agent = wx.call("ticket/get", type="agent_config")
    assert agent["ticket"] != t1["ticket"]
    assert wx.call("ticket/get")["errcode"] == 40058


# -- the generated directory ----------------------------------------------------------------------------
def test_generated_directory_is_consistent_and_deterministic():
    d = Directory.generate(3000, 300, seed=5)
    again = Directory.generate(3000, 300, seed=5)
    assert [u.userid for u in d.users.values()] == [u.userid for u in again.users.values()]
    assert len(d.users) == 3000 and len(d.departments) == 300
    assert len({u.mobile for u in d.users.values()}) == 3000
    for dept in d.departments.values():
        assert dept.id == ROOT or dept.parentid in d.departments
        names = [d.departments[c].name for c in d.children[dept.id]]
        assert len(names) == len(set(names)), "sibling department names are unique"
    assert max(d.depth(i) for i in d.departments) <= 6
    multi = sum(1 for u in d.users.values() if len(u.department) > 1)
    assert 0.05 < multi / 3000 < 0.3
    assert all(2 <= len(u.name) <= 4 for u in d.users.values())
    assert sum(1 for x in d.departments if d.leaders(x)) >= 0.9 * sum(1 for x in d.departments if d.members[x])
    assert Directory.generate(3000, 300, seed=6).users.keys() != d.users.keys()


@pytest.mark.parametrize("users,depts", [(0, 1), (1, 1), (5, 50)])
def test_tiny_directories(users, depts):
    d = Directory.generate(users, depts)
    assert len(d.users) == users and len(d.departments) == depts
    rows, cursor = d.list_id_page("", 10000)
    assert cursor == "" and len(rows) == sum(len(u.department) for u in d.users.values())


# -- the 工作台 tile (docs/wecom.md, "The 工作台 tile") ------------------------------------------------
def test_workbench_template_and_per_member_data(wx, sim, client, cfg):
    user = next(iter(sim.directory.users))
    items = [{"key": "待审批", "data": "2", "jump_url": "https://x/a"}, {"key": "待签署", "data": "0"}]
    data = {"agentid": cfg.agent_id, "userid": user, "type": "keydata", "keydata": {"items": items}}
    # per-member data before any template is refused
    assert wx.call("agent/set_workbench_data", json=data)["errcode"] == 40058
    template = {"agentid": cfg.agent_id, "type": "keydata", "keydata": {"items": items}, "replace_user_data": False}
    assert wx.call("agent/set_workbench_template", json=template)["errcode"] == 0
    assert wx.call("agent/set_workbench_template", json={**template, "agentid": 1})["errcode"] == 301002
    too_many = {**template, "keydata": {"items": items * 3}}
    assert wx.call("agent/set_workbench_template", json=too_many)["errcode"] == 40058
    got = wx.call("agent/get_workbench_template", json={"agentid": cfg.agent_id})
    assert got["type"] == "keydata" and got["keydata"]["items"] == items
    assert wx.call("agent/set_workbench_data", json=data)["errcode"] == 0
    assert wx.call("agent/set_workbench_data", json={**data, "userid": "nobody"})["errcode"] == 60111
    shown = client.get("/sim/workbench", params={"userid": user}).json()
    assert shown["template"]["type"] == "keydata" and shown["users"][user]["keydata"]["items"] == items
    # 10 a minute per member, then 45009 until the minute has passed
    for _ in range(9):
        assert wx.call("agent/set_workbench_data", json=data)["errcode"] == 0
    assert wx.call("agent/set_workbench_data", json=data)["errcode"] == 45009
    sim.clock.advance(61)
    assert wx.call("agent/set_workbench_data", json=data)["errcode"] == 0
