"""`POST /api/v1/jssdk/signature`: wx.config / wx.agentConfig signatures (docs/wecom.md, "JS-SDK", and its vector)."""

from __future__ import annotations

import hashlib

import pytest
from httpx import Response

from bot.api.jssdk import sign, signature
from tests.conftest import TEST_ENV

AUTH = {"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]}
CORP_TICKET = "corp-jsapi-ticket-0001"
AGENT_TICKET = "agent-config-ticket-0002"


def test_worked_example_from_protocol(vectors):
    for v in vectors["jssdk"]:
        assert signature(v["jsapi_ticket"], v["noncestr"], v["timestamp"], v["url"]) == v["expect_signature"]
        assert hashlib.sha1(v["string1"].encode()).hexdigest() == v["expect_signature"]


def test_protocol_2_6_literal():
    assert (
        signature(
            "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            "Wm3WZYTPz0wzccnW",
            1414587457,
            "http://mp.weixin.qq.com?params=value",
        )
        == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )


@pytest.fixture
def tickets(wecom):
    corp = wecom.get("/cgi-bin/get_jsapi_ticket").mock(
        return_value=Response(200, json={"errcode": 0, "errmsg": "ok", "ticket": CORP_TICKET, "expires_in": 7200})
    )
    agent = wecom.get("/cgi-bin/ticket/get", params={"type": "agent_config"}).mock(
        return_value=Response(200, json={"errcode": 0, "errmsg": "ok", "ticket": AGENT_TICKET, "expires_in": 7200})
    )
    return corp, agent


def expected(ticket, nonce, ts, url):
    return hashlib.sha1(f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={ts}&url={url}".encode()).hexdigest()


def test_signs_both_configs_with_their_own_ticket(client, tickets, store):
    url = "https://sign.example.com/h5/?v=2#/pages/task/task_detail?id=1"
    r = client.post("/api/v1/jssdk/signature", json={"url": url}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    page = "https://sign.example.com/h5/?v=2"  # fragment stripped
    assert body["url"] == page
    c, a = body["config"], body["agentConfig"]
    assert c["appId"] == "ww1a2b3c4d5e6f7a8b"
    assert a["corpid"] == "ww1a2b3c4d5e6f7a8b" and a["agentid"] == 1000002
    assert c["signature"] == expected(CORP_TICKET, c["nonceStr"], c["timestamp"], page)
    assert a["signature"] == expected(AGENT_TICKET, a["nonceStr"], a["timestamp"], page)
    assert c["signature"] != a["signature"]
    assert len(c["nonceStr"]) >= 16 and isinstance(c["timestamp"], int)


def test_tickets_are_cached_separately(client, tickets, store):
    corp, agent = tickets
    for _ in range(3):
        assert (
            client.post(
                "/api/v1/jssdk/signature", json={"url": "https://wqbot.example.com/x"}, headers=AUTH
            ).status_code
            == 200
        )
    assert corp.call_count == 1 and agent.call_count == 1


def test_fixed_nonce_and_time_give_the_documented_string(settings, tickets):
    out = sign(settings, "https://wqbot.example.com/page?a=1", now=1414587457, nonce="Wm3WZYTPz0wzccnW")
    assert out["config"]["signature"] == expected(
        CORP_TICKET, "Wm3WZYTPz0wzccnW", 1414587457, "https://wqbot.example.com/page?a=1"
    )
    assert out["agentConfig"]["timestamp"] == 1414587457


@pytest.mark.parametrize(
    "url, status",
    [
        ("https://evil.com/h5/", 403),
        ("https://sign.example.com.evil.com/", 403),
        ("https://sign.example.com:8443/h5/", 403),
        ("http://sign.example.com/h5/", 403),
        ("https://evil.com#https://sign.example.com/", 403),
        ("https://user@sign.example.com/h5/", 400),
        ("javascript:alert(1)", 400),
        ("/h5/#/pages/x", 400),
        ("https://sign.example.com/h5/ x", 400),
        ("https://sign.example.com\\@evil.com/", 400),
        ("", 400),
        (None, 400),
        (12, 400),
        ("https://sign.example.com/" + "a" * 3000, 400),
    ],
)
def test_only_our_origins_are_signed(client, tickets, store, url, status):
    r = client.post("/api/v1/jssdk/signature", json={"url": url}, headers=AUTH)
    assert r.status_code == status, r.text
    assert r.json()["error"] in ("invalid_url", "origin_not_allowed")


@pytest.mark.parametrize(
    "url",
    [
        "https://wqbot.example.com/anything",
        "https://WQBOT.example.com:443/x",
        "https://sign.example.com/h5/#/p",
    ],
)
def test_public_and_h5_origins_are_signed(client, tickets, store, url):
    assert client.post("/api/v1/jssdk/signature", json={"url": url}, headers=AUTH).status_code == 200


def test_needs_the_bearer_token(client, tickets, store):
    assert client.post("/api/v1/jssdk/signature", json={"url": "https://wqbot.example.com/"}).status_code == 401


def test_wecom_refusing_a_ticket_is_a_clear_json_error(client, wecom, store):
    wecom.get("/cgi-bin/get_jsapi_ticket").mock(return_value=Response(200, json={"errcode": 48002, "errmsg": "no"}))
    r = client.post("/api/v1/jssdk/signature", json={"url": "https://wqbot.example.com/"}, headers=AUTH)
    assert r.status_code == 502 and r.json()["error"] == "wecom_unavailable" and "48002" in r.json()["message"]
