"""The login stand-ins: the OAuth authorize page and the PC QR-login page check their parameters
as WeCom does (docs/wecom.md, "OAuth and web login") and redirect with a single-use code and the original state."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import CORP

CALLBACK = "https://wqbot.example.com/oauth/h5/callback"


def authorize(client, **overrides):
    params = {
        "appid": CORP,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "Ab12cd",
        "agentid": "1000002",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    return client.get("/connect/oauth2/authorize", params=params, follow_redirects=False)


def sso(client, **overrides):
    params = {
        "login_type": "CorpApp",
        "appid": CORP,
        "agentid": "1000002",
        "redirect_uri": "https://wqbot.example.com/wx/login",
        "state": "s1",
        "lang": "zh",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    return client.get("/wwlogin/sso/login", params=params, follow_redirects=False)


def test_authorize_page_lists_members_in_chinese(client, sim):
    r = authorize(client)
    assert r.status_code == 200 and "请求获取你的身份" in r.text and "非企业成员" in r.text
    first = next(u for u in sim.directory.users.values() if u.status == 1)
    assert first.name in r.text and f"sim_userid={first.userid}" in r.text
    assert "X-Sim-Errcode" not in r.headers


def test_picking_a_member_redirects_with_code_and_state(client, sim, wx):
    u = next(u for u in sim.directory.users.values() if u.status == 1)
    r = authorize(client, sim_userid=u.userid, redirect_uri=CALLBACK + "?next=%2Fh5")
    assert r.status_code == 302
    loc = urlsplit(r.headers["location"])
    q = parse_qs(loc.query)
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == CALLBACK and q["state"] == ["Ab12cd"] and q["next"] == ["/h5"]
    assert wx.call("auth/getuserinfo", code=q["code"][0])["userid"] == u.userid
    assert wx.call("auth/getuserinfo", code=q["code"][0])["errcode"] == 40029


def test_non_member_and_refusal(client, wx):
    r = authorize(client, sim_openid="oOutsider")
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    assert wx.call("auth/getuserinfo", code=code)["openid"] == "oOutsider"
    refused = authorize(client, sim_refuse="1")
    q = parse_qs(urlsplit(refused.headers["location"]).query)
    assert "code" not in q and q["state"] == ["Ab12cd"]


@pytest.mark.parametrize(
    "overrides,errcode,text",
    [
        ({"redirect_uri": "https://evil.example.com/oauth/h5/callback"}, 50001, "redirect_uri需使用应用可信域名"),
        ({"redirect_uri": "https://wqbot.example.com:443/oauth/h5/callback"}, 50001, "redirect_uri需使用应用可信域名"),
        ({"redirect_uri": "/oauth/h5/callback"}, 40058, "redirect_uri"),
        ({"redirect_uri": None}, 40058, "redirect_uri"),
        ({"appid": "wwother"}, 40013, "appid"),
        ({"response_type": "token"}, 40058, "response_type"),
        ({"scope": "snsapi_userinfo"}, 40058, "scope"),
        ({"state": "has.dots-and-dashes"}, 40058, "state"),
        ({"state": "a" * 129}, 40058, "state"),
        ({"agentid": "999"}, 40056, "agentid"),
        ({"agentid": None, "scope": "snsapi_privateinfo"}, 40058, "agentid"),
    ],
)
def test_authorize_refuses_what_wecom_refuses(client, sim, overrides, errcode, text):
    u = next(iter(sim.directory.users.values()))
    r = authorize(client, sim_userid=u.userid, **overrides)
    assert r.status_code == 200 and r.headers["X-Sim-Errcode"] == str(errcode) and text in r.text


def test_privateinfo_page_asks_for_consent_and_yields_a_ticket(client, sim, wx):
    assert "敏感信息" in authorize(client, scope="snsapi_privateinfo").text
    u = next(u for u in sim.directory.users.values() if u.status == 1)
    r = authorize(client, scope="snsapi_privateinfo", sim_userid=u.userid)
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    assert wx.call("auth/getuserinfo", code=code)["user_ticket"]


def test_auto_pick_for_browserless_flows(client, sim):
    u = next(u for u in sim.directory.users.values() if u.status == 1)
    assert client.put("/sim/oauth/auto", json={"userid": u.userid}).json() == {"auto": {"userid": u.userid}}
    assert authorize(client).status_code == 302
    assert sso(client).status_code == 302
    client.put("/sim/oauth/auto", json={})
    assert authorize(client).status_code == 200
    assert client.put("/sim/oauth/auto", json={"userid": "ghost"}).status_code == 404


def test_sso_login(client, sim, wx):
    page = sso(client)
    assert page.status_code == 200 and "企业微信扫码登录" in page.text
    u = next(u for u in sim.directory.users.values() if u.status == 1)
    r = sso(client, sim_userid=u.userid)
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["state"] == ["s1"] and wx.call("auth/getuserinfo", code=q["code"][0])["userid"] == u.userid
    refused = sso(client, sim_refuse="1")
    assert "code" not in parse_qs(urlsplit(refused.headers["location"]).query)


@pytest.mark.parametrize(
    "overrides,errcode",
    [
        ({"login_type": "ServiceApp"}, 40058),
        ({"appid": "wwother"}, 40013),
        ({"agentid": None}, 40056),
        ({"redirect_uri": "https://other.example.com/wx/login"}, 50001),
    ],
)
def test_sso_refuses_what_wecom_refuses(client, overrides, errcode):
    assert sso(client, **overrides).headers["X-Sim-Errcode"] == str(errcode)


def test_sso_accepts_the_web_login_domain_and_refuses_invisible_members(client, sim):
    sim.cfg.sso_redirect_domain = "pc.example.com:8443"
    assert sso(client, redirect_uri="https://pc.example.com:8443/wx/login").status_code == 200
    d = sim.directory
    child = d.children[1][0]
    sim.cfg.visible_departments = (child,)
    sim.invalidate_visibility()
    outsider = next(u for u in d.users.values() if not set(u.department) & set(d.subtree(child)))
    r = sso(client, sim_userid=outsider.userid)
    assert r.headers["X-Sim-Errcode"] == "60011" and "可见范围" in r.text
