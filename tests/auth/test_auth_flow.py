"""The login routes end to end through the app, WeCom faked with respx at its HTTP edge."""

from __future__ import annotations

import re

import pytest
from httpx import Response

import settings as settings_mod
from store import login as login_store
from tests.auth.support import PUBLIC, add_member, query, start, ticket_of, userinfo
from tests.conftest import TEST_ENV

AUTH = {"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]}


def validate(client, ticket):
    return client.post("/api/v1/tickets/validate", json={"ticket": ticket}, headers=AUTH)


def callback(client, state, code="CODE123", path="/oauth/h5/callback"):
    return client.get(path, params={"code": code, "state": state})


# -- /oauth/h5 ---------------------------------------------------------------------------------------
def test_start_redirects_to_wecom_with_a_fresh_state_and_binds_the_browser(login_client, wecom, store):
    r = login_client.get("/oauth/h5", params={"next": "/pages/task/task_detail?id=T-1001"})
    assert r.status_code == 302
    loc = r.headers["location"]
    assert loc.startswith("https://open.weixin.qq.com/connect/oauth2/authorize?") and loc.endswith("#wechat_redirect")
    q = query(loc.split("#")[0])
    assert q["redirect_uri"] == PUBLIC + "/oauth/h5/callback" and q["agentid"] == "1000002"
    assert re.fullmatch(r"[A-Za-z0-9]{16,128}", q["state"])
    assert r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"].lower()
    assert "wqbot_login=" in cookie and "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
    rows = list(login_store.OAuthState.select())
    assert len(rows) == 1
    assert rows[0].flow == "h5" and rows[0].next_path == "/pages/task/task_detail?id=T-1001"
    assert rows[0].state_hash != q["state"] and q["state"] not in rows[0].state_hash  # stored hashed
    # a second login from the same browser keeps its id: two tabs may log in at once
    r2 = login_client.get("/oauth/h5")
    assert query(r2.headers["location"].split("#")[0])["state"] != q["state"]
    assert (
        login_client.cookies.get("__Host-wqbot_login")
        and r2.headers["set-cookie"].split(";")[0] == r.headers["set-cookie"].split(";")[0]
    )


def test_start_links_built_by_h5_entry_are_accepted(login_client, wecom, store, settings):
    from bot.auth.links import h5_entry

    r = login_client.get(h5_entry(settings, "/pages/task/task_detail?id=T-1001&from=card"))
    assert r.status_code == 302
    assert login_store.OAuthState.get().next_path == "/pages/task/task_detail?id=T-1001&from=card"


@pytest.mark.parametrize("hostile", ["//evil.com", "https://evil.com/x", "/%2F%2Fevil.com", "/\\evil", "javascript:x"])
def test_hostile_next_lands_on_the_home_page(login_client, wecom, store, hostile):
    add_member("zhangsan", "张三")
    state = start(login_client, next=hostile)
    userinfo(wecom, {"userid": "zhangsan"})
    r = callback(login_client, state)
    assert r.status_code == 302
    assert r.headers["location"].startswith("https://sign.example.com/h5/#/pages/login/login_pro?ticket=")


def test_start_without_h5_url_explains_the_setting(wecom, store):
    from starlette.testclient import TestClient

    from bot.app import create_app

    s = settings_mod.load(env={**TEST_ENV, "H5_URL": ""}, dotenv=None)
    with TestClient(create_app(s, init_store=False), base_url=PUBLIC, follow_redirects=False) as c:
        r = c.get("/oauth/h5")
    assert r.status_code == 503 and "H5_URL" in r.text and "登录入口尚未配置" in r.text
    assert login_store.OAuthState.select().count() == 0


def test_public_url_not_the_trusted_domain_gets_the_fix_not_wecoms_error(login_client, wecom, store):
    wecom.get("/cgi-bin/agent/get").mock(
        return_value=Response(
            200, json={"errcode": 0, "errmsg": "ok", "agentid": 1000002, "redirect_domain": "sign.example.com:8099"}
        )
    )
    r = login_client.get("/oauth/h5")
    assert r.status_code == 403
    assert "可信域名" in r.text and "sign.example.com:8099" in r.text and "wqbot.example.com" in r.text
    assert "网页授权及JS-SDK" in r.text
    assert login_store.OAuthState.select().count() == 0


@pytest.mark.parametrize(
    "answer",
    [
        Response(200, json={"errcode": 0, "errmsg": "ok", "agentid": 1000002}),  # no domain reported
        Response(200, json={"errcode": 48002, "errmsg": "api forbidden"}),
        Response(200, json={"errcode": 0, "errmsg": "ok", "redirect_domain": "WQBOT.example.com:443"}),
    ],
)
def test_domain_check_is_advisory(login_client, wecom, store, answer):
    wecom.get("/cgi-bin/agent/get").mock(return_value=answer)
    assert login_client.get("/oauth/h5").status_code == 302


# -- /oauth/h5/callback --------------------------------------------------------------------------------
def test_callback_issues_a_ticket_and_lands_on_the_h5_route(login_client, wecom, store):
    add_member("zhangsan", "张三", departments=(2, 1), account="zhangsan@weiqian")
    state = start(login_client, next="/pages/task/task_detail?id=T-1001")
    exchange = userinfo(wecom, {"userid": "zhangsan"})
    r = callback(login_client, state)
    assert r.status_code == 302
    loc = r.headers["location"]
    assert re.fullmatch(
        r"https://sign\.example\.com/h5/#/pages/task/task_detail\?id=T-1001&ticket=[A-Za-z0-9]{40,}", loc
    )
    assert exchange.call_count == 1 and exchange.calls[0].request.url.params["code"] == "CODE123"
    ticket = ticket_of(loc)
    assert login_store.LoginTicket.get().ticket_hash != ticket  # stored hashed
    v = validate(login_client, ticket)
    assert v.status_code == 200
    assert v.json() == {
        "userid": "zhangsan",
        "name": "张三",
        "departments": [2, 1],
        "account": "zhangsan@weiqian",
        "via": "h5",
    }
    assert validate(login_client, ticket).status_code == 410


def test_forged_state_is_refused(login_client, wecom, store):
    add_member("zhangsan")
    start(login_client)
    exchange = userinfo(wecom, {"userid": "zhangsan"})
    for forged in ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x" * 129, "abc.def-ghi", "<script>"):
        r = callback(login_client, forged)
        assert r.status_code == 400 and "state_unknown" in r.text and "<script>" not in r.text
    assert exchange.call_count == 0


def test_expired_state_is_refused(login_client, wecom, store):
    add_member("zhangsan")
    state = start(login_client)
    login_store.OAuthState.update(expires_at=login_store.now() - 1).execute()
    exchange = userinfo(wecom, {"userid": "zhangsan"})
    r = callback(login_client, state)
    assert r.status_code == 400 and "登录已超时" in r.text and "state_expired" in r.text
    assert exchange.call_count == 0


def test_replayed_state_is_refused_and_the_code_is_exchanged_once(login_client, wecom, store):
    add_member("zhangsan")
    state = start(login_client)
    exchange = userinfo(wecom, {"userid": "zhangsan"})
    assert callback(login_client, state).status_code == 302
    r = callback(login_client, state)
    assert r.status_code == 400 and "state_used" in r.text and "只能使用一次" in r.text
    assert exchange.call_count == 1
    assert login_store.LoginTicket.select().count() == 1


def test_state_from_the_other_flow_is_refused(login_client, wecom, store):
    add_member("zhangsan")
    exchange = userinfo(wecom, {"userid": "zhangsan"})
    h5_state = start(login_client, "/oauth/h5")
    pc_state = start(login_client, "/wx/qrlogin")
    r = callback(login_client, h5_state, path="/wx/login")
    assert r.status_code == 400 and "state_wrong_flow" in r.text and "/wx/login" in r.text
    r = callback(login_client, pc_state, path="/oauth/h5/callback")
    assert r.status_code == 400 and "state_wrong_flow" in r.text
    assert exchange.call_count == 0
    # the refused attempts did not use the states up for their own flow
    assert callback(login_client, h5_state, path="/oauth/h5/callback").status_code == 302
    assert callback(login_client, pc_state, path="/wx/login").status_code == 302


def test_callback_in_another_browser_is_refused(app, login_client, wecom, store):
    from starlette.testclient import TestClient

    add_member("zhangsan")
    state = start(login_client)
    exchange = userinfo(wecom, {"userid": "zhangsan"})
    with TestClient(app, base_url=PUBLIC, follow_redirects=False) as victim:
        r = callback(victim, state)
        assert r.status_code == 403 and "state_wrong_browser" in r.text
        victim.cookies.set("__Host-wqbot_login", "A" * 64)
        assert callback(victim, state).status_code == 403
    assert exchange.call_count == 0
    assert callback(login_client, state).status_code == 302


def test_callback_without_state_or_code(login_client, wecom, store):
    r = login_client.get("/oauth/h5/callback", params={"code": "C"})
    assert r.status_code == 400 and "state_missing" in r.text
    state = start(login_client)
    r = login_client.get("/oauth/h5/callback", params={"state": state})
    assert r.status_code == 400 and "login_cancelled" in r.text


def test_head_does_not_use_the_login_up(login_client, wecom, store):
    add_member("zhangsan")
    state = start(login_client)
    userinfo(wecom, {"userid": "zhangsan"})
    assert login_client.head("/oauth/h5/callback", params={"code": "C", "state": state}).status_code == 200
    assert callback(login_client, state).status_code == 302


def test_reused_code_is_explained(login_client, wecom, store):
    add_member("zhangsan")
    state = start(login_client)
    userinfo(wecom, {"errcode": 40029, "errmsg": "invalid code"})
    r = callback(login_client, state)
    assert r.status_code == 400
    assert "登录码已失效" in r.text and "40029" in r.text and "只能使用一次" in r.text
    assert "CODE123" not in r.text
    assert "重新登录" in r.text and "/oauth/h5" in r.text
    assert login_store.LoginTicket.select().count() == 0


def test_50001_names_the_trusted_domain_to_set(login_client, wecom, store):
    state = start(login_client)
    userinfo(wecom, {"errcode": 50001, "errmsg": "redirect_url not authorised"})
    r = callback(login_client, state)
    assert r.status_code == 403
    assert "可信域名" in r.text and "wqbot.example.com" in r.text and "50001" in r.text
    assert "WECOM_APP_SECRET" in r.text
    assert TEST_ENV["WECOM_APP_SECRET"] not in r.text


def test_member_outside_the_visible_range(login_client, wecom, store):
    state = start(login_client)
    userinfo(wecom, {"errcode": 50002, "errmsg": "user out of range"})
    r = callback(login_client, state)
    assert r.status_code == 403 and "可见范围" in r.text


def test_wecom_down_is_a_page_not_a_crash(login_client, wecom, store, settings, monkeypatch):
    import httpx

    from bot.wecom import client_for

    monkeypatch.setattr(client_for(settings), "_sleep", lambda s: None)  # no real backoff waits
    state = start(login_client)
    wecom.get("/cgi-bin/auth/getuserinfo").mock(side_effect=httpx.ConnectError("refused"))
    r = callback(login_client, state)
    assert r.status_code == 502 and "连不上企业微信" in r.text


def test_non_member_gets_a_page_not_a_redirect(login_client, wecom, store):
    state = start(login_client)
    userinfo(wecom, {"openid": "oAbCdEf123", "external_userid": "wmXYZ"})
    r = callback(login_client, state)
    assert r.status_code == 403 and "location" not in r.headers
    assert "仅限本企业成员登录" in r.text and r.headers["content-type"].startswith("text/html")
    assert login_store.LoginTicket.select().count() == 0


def test_disabled_member_gets_a_page(login_client, wecom, store):
    add_member("lisi", "李四", active=False)
    state = start(login_client)
    userinfo(wecom, {"userid": "lisi"})
    r = callback(login_client, state)
    assert r.status_code == 403 and "账号已停用" in r.text and "lisi" in r.text
    assert login_store.LoginTicket.select().count() == 0


def test_member_unknown_to_the_directory_gets_a_page(login_client, wecom, store):
    state = start(login_client)
    userinfo(wecom, {"userid": "<b>newbie</b>"})
    r = callback(login_client, state)
    assert r.status_code == 403 and "wqbot sync" in r.text
    assert "<b>newbie</b>" not in r.text and "&lt;b&gt;newbie&lt;/b&gt;" in r.text  # escaped


def test_userid_case_from_wecom_is_matched(login_client, wecom, store):
    add_member("ZhangSan")
    state = start(login_client)
    userinfo(wecom, {"userid": "zhangsan"})
    r = callback(login_client, state)
    assert r.status_code == 302
    assert validate(login_client, ticket_of(r.headers["location"])).json()["userid"] == "ZhangSan"


# -- PC: /wx/qrlogin and /wx/login -------------------------------------------------------------------
def test_pc_login_lands_on_pc_url_with_a_ticket(login_client, wecom, store):
    add_member("wangwu", "王五", departments=(3,))
    r = login_client.get("/wx/qrlogin", params={"next": "/tasks/T-1"})
    assert r.status_code == 302
    loc = r.headers["location"]
    assert loc.startswith("https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp&")
    q = query(loc)
    assert q["redirect_uri"] == PUBLIC + "/wx/login" and q["appid"] == "ww1a2b3c4d5e6f7a8b"
    userinfo(wecom, {"userid": "wangwu"})
    r = callback(login_client, q["state"], path="/wx/login")
    assert r.status_code == 302
    assert re.fullmatch(r"https://sign\.example\.com/pc/tasks/T-1\?ticket=[A-Za-z0-9]+", r.headers["location"])
    v = validate(login_client, ticket_of(r.headers["location"]))
    assert v.json()["via"] == "pc" and v.json()["userid"] == "wangwu"


def test_pc_login_without_pc_url(wecom, store):
    from starlette.testclient import TestClient

    from bot.app import create_app

    s = settings_mod.load(env={**TEST_ENV, "PC_URL": ""}, dotenv=None)
    with TestClient(create_app(s, init_store=False), base_url=PUBLIC, follow_redirects=False) as c:
        r = c.get("/wx/qrlogin")
    assert r.status_code == 503 and "PC_URL" in r.text


# -- /login ------------------------------------------------------------------------------------------
WECOM_UA = (
    "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
    "wxwork/4.1.22 MicroMessenger/7.0.1 Language/zh ColorScheme/Light"
)
DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126 Safari/537.36"


def test_login_sends_wecom_browsers_to_oauth_and_others_to_the_qr_code(login_client, store):
    r = login_client.get("/login", params={"next": "/pages/x?id=1"}, headers={"User-Agent": WECOM_UA})
    assert r.status_code == 302 and r.headers["location"] == PUBLIC + "/oauth/h5?next=%2Fpages%2Fx%3Fid%3D1"
    r = login_client.get("/login", params={"next": "/tasks/1"}, headers={"User-Agent": DESKTOP_UA})
    assert r.status_code == 302 and r.headers["location"] == PUBLIC + "/wx/qrlogin?next=%2Ftasks%2F1"
    r = login_client.get("/login", params={"next": "//evil.com"}, headers={"User-Agent": DESKTOP_UA})
    assert r.headers["location"] == PUBLIC + "/wx/qrlogin"


# -- private fields (snsapi_privateinfo) -------------------------------------------------------------
@pytest.fixture
def privateinfo_client(store):
    from starlette.testclient import TestClient

    from bot.app import create_app

    s = settings_mod.load(
        env={**TEST_ENV, "WECOM_OAUTH_SCOPE": "snsapi_privateinfo", "SYNC_MATCH_FIELD": "mobile"}, dotenv=None
    )
    with TestClient(create_app(s, init_store=False), base_url=PUBLIC, follow_redirects=False) as c:
        yield c


def test_privateinfo_stores_mobile_and_email_and_links_the_account(privateinfo_client, wecom, store):
    from store.directory import User

    add_member("zhaoliu", "赵六")
    r = privateinfo_client.get("/oauth/h5")
    assert query(r.headers["location"].split("#")[0])["scope"] == "snsapi_privateinfo"
    state = query(r.headers["location"].split("#")[0])["state"]
    userinfo(wecom, {"userid": "zhaoliu", "user_ticket": "USER_TICKET_1"})
    detail = wecom.post("/cgi-bin/auth/getuserdetail").mock(
        return_value=Response(
            200,
            json={
                "errcode": 0,
                "errmsg": "ok",
                "userid": "zhaoliu",
                "mobile": "13800000006",
                "email": "zhaoliu@example.com",
            },
        )
    )
    r = callback(privateinfo_client, state)
    assert r.status_code == 302
    assert detail.call_count == 1
    assert (
        b'"user_ticket": "USER_TICKET_1"' in detail.calls[0].request.content
        or b'"user_ticket":"USER_TICKET_1"' in detail.calls[0].request.content
    )
    u = User.get(User.userid == "zhaoliu")
    assert (u.mobile, u.mobile_source, u.email, u.email_source) == (
        "13800000006",
        "oauth",
        "zhaoliu@example.com",
        "oauth",
    )
    v = validate(privateinfo_client, ticket_of(r.headers["location"])).json()
    assert v["account"] == u.account and "13800000006" in u.account  # linked by SYNC_MATCH_FIELD=mobile


def test_privateinfo_does_not_override_what_the_directory_gives(privateinfo_client, wecom, store):
    from store.directory import User

    add_member("zhaoliu", mobile="13900000009", mobile_source="directory")
    state = start(privateinfo_client)
    userinfo(wecom, {"userid": "zhaoliu", "user_ticket": "T"})
    wecom.post("/cgi-bin/auth/getuserdetail").mock(
        return_value=Response(
            200, json={"errcode": 0, "errmsg": "ok", "userid": "zhaoliu", "mobile": "13800000006", "email": ""}
        )
    )
    assert callback(privateinfo_client, state).status_code == 302
    u = User.get(User.userid == "zhaoliu")
    assert (u.mobile, u.mobile_source, u.email) == ("13900000009", "directory", None)


def test_privateinfo_failure_does_not_block_the_login(privateinfo_client, wecom, store):
    from store.directory import User

    add_member("zhaoliu", mobile="13800000000", mobile_source="directory")
    state = start(privateinfo_client)
    userinfo(wecom, {"userid": "zhaoliu", "user_ticket": "T"})
    wecom.post("/cgi-bin/auth/getuserdetail").mock(return_value=Response(200, json={"errcode": 40001, "errmsg": "x"}))
    assert callback(privateinfo_client, state).status_code == 302
    u = User.get(User.userid == "zhaoliu")
    assert (u.mobile, u.mobile_source) == ("13800000000", "directory")


def test_base_scope_never_calls_getuserdetail(login_client, wecom, store):
    add_member("zhaoliu")
    state = start(login_client)
    userinfo(wecom, {"userid": "zhaoliu", "user_ticket": "T"})
    detail = wecom.post("/cgi-bin/auth/getuserdetail").mock(return_value=Response(200, json={"errcode": 0}))
    assert callback(login_client, state).status_code == 302
    assert detail.call_count == 0


# -- the login cookie: issued by wqbot only, __Host- under https -------------------------------------
def _cookie(response) -> tuple[str, str]:
    name_value, _, attributes = response.headers["set-cookie"].partition(";")
    name, _, value = name_value.partition("=")
    return name, value, attributes.lower()


def test_a_login_cookie_wqbot_never_issued_is_replaced(login_client, wecom, store):
    for made_up in ("A" * 64, "a" * 32, "A" * 32 + "0" * 32):
        login_client.cookies.clear()
        login_client.cookies.set("__Host-wqbot_login", made_up, domain="wqbot.example.com")
        r = login_client.get("/oauth/h5")
        name, value, _ = _cookie(r)
        assert name == "__Host-wqbot_login" and value != made_up and len(value) == 64
    # the issued one is kept on the next start (two tabs may log in at once)
    assert _cookie(login_client.get("/oauth/h5"))[1] == value


def test_the_login_cookie_is_host_prefixed_under_https_only(wecom, store):
    from starlette.testclient import TestClient

    from bot.app import create_app

    r = TestClient(create_app(settings_mod.load(env=dict(TEST_ENV), dotenv=None), init_store=False)).get(
        "https://wqbot.example.com/wx/qrlogin", follow_redirects=False
    )
    name, _, attributes = _cookie(r)
    assert name == "__Host-wqbot_login" and "secure" in attributes and "path=/" in attributes
    assert "domain" not in attributes  # __Host- forbids it
    plain = settings_mod.load(env={**TEST_ENV, "PUBLIC_URL": "http://127.0.0.1:8000"}, dotenv=None)
    r = TestClient(create_app(plain, init_store=False)).get("http://127.0.0.1:8000/wx/qrlogin", follow_redirects=False)
    name, _, attributes = _cookie(r)
    assert name == "wqbot_login" and "secure" not in attributes


# -- anonymous floods of the start pages -------------------------------------------------------------
def test_a_long_next_is_not_stored(login_client, wecom, store):
    r = login_client.get("/oauth/h5", params={"next": "/pages/x?q=" + "😀" * 150})  # 1,800 bytes quoted
    assert r.status_code == 302
    assert login_store.OAuthState.get().next_path is None  # the login lands on the home page
    r = login_client.get("/oauth/h5", params={"next": "/pages/x?q=" + "好" * 50})
    assert login_store.OAuthState.select().where(login_store.OAuthState.next_path.is_null(False)).count() == 1


def test_one_client_cannot_start_logins_without_limit(app, login_client, wecom, store, settings):
    codes = [login_client.get("/wx/qrlogin").status_code for _ in range(settings.login_starts_per_minute + 5)]
    assert codes[: settings.login_starts_per_minute] == [302] * settings.login_starts_per_minute
    assert set(codes[settings.login_starts_per_minute :]) == {429}
    r = login_client.get("/oauth/h5")
    assert r.status_code == 429 and "LOGIN_STARTS_PER_MINUTE" in r.text and int(r.headers["retry-after"]) >= 1
    assert login_client.get("/login").status_code == 429
    assert login_store.OAuthState.select().count() == settings.login_starts_per_minute  # nothing more written


def test_the_start_limit_refills_and_counts_ipv6_per_64():
    from bot.auth.ratelimit import StartLimiter

    t = [0.0]
    limiter = StartLimiter(60, now=lambda: t[0])
    assert all(limiter.allow(f"2001:db8:5:6::{n:x}") for n in range(60))
    assert not limiter.allow("2001:db8:5:6:ffff::1")  # the same /64
    assert limiter.allow("2001:db8:5:7::1") and limiter.allow("192.0.2.1")
    t[0] += 1.0  # one start a second comes back
    assert limiter.allow("2001:db8:5:6::1") and not limiter.allow("2001:db8:5:6::1")
    small = StartLimiter(60, now=lambda: t[0], max_clients=3)
    assert all(small.allow(f"192.0.2.{n}") for n in range(3))
    assert not small.allow("192.0.2.99")  # the table is full of partly-spent buckets
    t[0] += 61  # they refill, carry nothing, and make room
    assert small.allow("192.0.2.99")


def test_expired_states_are_purged_by_a_periodic_job(settings, store, clock):
    from bot.app import build
    from bot.auth.jobs import purge_logins

    fresh = login_store.create_state(TEST_ENV["SECRET_KEY"], "h5", None, "b")
    login_store.create_state(TEST_ENV["SECRET_KEY"], "h5", None, "b", ttl=-3601)
    login_store.create_state(TEST_ENV["SECRET_KEY"], "h5", None, "b", ttl=-100)  # kept: says "expired"
    assert purge_logins.call_local() == 1
    assert login_store.OAuthState.select().count() == 2
    assert "wqbot.auth.purge_logins" in build(settings).task_names  # scheduled wherever the consumer runs
    assert fresh
