"""The URLs of a login, field by field against docs/wecom.md ("OAuth and web login") and docs/api.md."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

import settings as settings_mod
from bot.auth.urls import authorize_url, landing_url, public_base, sso_url, with_ticket
from tests.conftest import TEST_ENV


def fields(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)


def test_authorize_url_matches_protocol(settings):
    url = authorize_url(settings, "Ab3State")
    # WeCom's form: https://open.weixin.qq.com/connect/oauth2/authorize?appid=CORPID&redirect_uri=
    # URLENCODED_REDIRECT&response_type=code&scope=snsapi_base&state=STATE&agentid=AGENTID#wechat_redirect
    assert url.startswith("https://open.weixin.qq.com/connect/oauth2/authorize?")
    assert url.endswith("#wechat_redirect") and url.count("#") == 1
    assert fields(url.split("#")[0]) == [
        ("appid", "ww1a2b3c4d5e6f7a8b"),
        ("redirect_uri", "https://wqbot.example.com/oauth/h5/callback"),
        ("response_type", "code"),
        ("scope", "snsapi_base"),
        ("state", "Ab3State"),
        ("agentid", "1000002"),
    ]
    # redirect_uri is percent-encoded in full (pitfall 16): no raw ":" or "/" inside the value.
    assert "redirect_uri=https%3A%2F%2Fwqbot.example.com%2Foauth%2Fh5%2Fcallback&" in url


def test_authorize_url_with_privateinfo_scope_and_own_bases():
    s = settings_mod.load(
        env={**TEST_ENV, "WECOM_OAUTH_SCOPE": "snsapi_privateinfo", "WECOM_OAUTH_BASE": "http://127.0.0.1:9999/"},
        dotenv=None,
    )
    url = authorize_url(s, "S")
    assert url.startswith("http://127.0.0.1:9999/connect/oauth2/authorize?")
    assert dict(fields(url.split("#")[0]))["scope"] == "snsapi_privateinfo"
    assert dict(fields(url.split("#")[0]))["agentid"] == "1000002"  # required for privateinfo


def test_sso_url_matches_protocol(settings):
    url = sso_url(settings, "Xy9State")
    # WeCom's form: https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp&appid=CORPID
    # &agentid=AGENTID&redirect_uri=URLENCODED&state=STATE&lang=zh
    assert url.startswith("https://login.work.weixin.qq.com/wwlogin/sso/login?")
    assert "#" not in url
    assert fields(url) == [
        ("login_type", "CorpApp"),
        ("appid", "ww1a2b3c4d5e6f7a8b"),
        ("agentid", "1000002"),
        ("redirect_uri", "https://wqbot.example.com/wx/login"),
        ("state", "Xy9State"),
        ("lang", "zh"),
    ]
    assert "redirect_uri=https%3A%2F%2Fwqbot.example.com%2Fwx%2Flogin&" in url


@pytest.mark.parametrize(
    "public, expected",
    [
        ("https://wqbot.example.com", "https://wqbot.example.com"),
        ("https://wqbot.example.com:443", "https://wqbot.example.com"),  # pitfall 15: explicit default port
        ("http://wqbot.example.com:80/", "http://wqbot.example.com"),
        ("HTTPS://WQBot.Example.com:8443", "https://wqbot.example.com:8443"),
        ("https://corp.example.com/wqbot/", "https://corp.example.com/wqbot"),
    ],
)
def test_public_url_is_normalised_for_the_trusted_domain(public, expected):
    s = settings_mod.load(env={**TEST_ENV, "PUBLIC_URL": public}, dotenv=None)
    assert public_base(s) == expected
    assert dict(fields(authorize_url(s, "S").split("#")[0]))["redirect_uri"] == expected + "/oauth/h5/callback"


# -- landing --------------------------------------------------------------------------------------
H5 = "https://sign.example.com/h5/#/pages/login/login_pro"


@pytest.mark.parametrize(
    "landing, next_path, expected",
    [
        (H5, None, "https://sign.example.com/h5/#/pages/login/login_pro?ticket=TK"),
        (
            H5,
            "/pages/task/task_detail?id=T-1001",
            "https://sign.example.com/h5/#/pages/task/task_detail?id=T-1001&ticket=TK",
        ),
        (
            "https://sign.example.com/h5/?v=2#/pages/login/login_pro?from=wecom",
            None,
            "https://sign.example.com/h5/?v=2#/pages/login/login_pro?from=wecom&ticket=TK",
        ),
        ("https://sign.example.com/pc/", None, "https://sign.example.com/pc/?ticket=TK"),
        ("https://sign.example.com/pc/", "/tasks/1?x=1", "https://sign.example.com/pc/tasks/1?x=1&ticket=TK"),
        ("https://sign.example.com/pc/index.html", "/tasks/1", "https://sign.example.com/pc/tasks/1?ticket=TK"),
        ("https://sign.example.com", "/tasks/1", "https://sign.example.com/tasks/1?ticket=TK"),
        ("https://sign.example.com/pc/?lang=zh", None, "https://sign.example.com/pc/?lang=zh&ticket=TK"),
    ],
)
def test_landing_url(landing, next_path, expected):
    assert landing_url(landing, next_path, "TK") == expected


@pytest.mark.parametrize(
    "target",
    [
        "/pages/x?ticket=ATTACKER",
        "/pages/x?a=1&ticket=ATTACKER&b=2",
        "/pages/x?TICKET=ATTACKER",
        "/pages/x?%74icket=A",
        "/pages/x?a=1;ticket=ATTACKER",
        "/pages/x?ticket=ATTACKER;b=2",
        "/pages/x?a=1;%74icket=ATTACKER&b=2",
        "/pages/x?a=1&amp;ticket=ATTACKER",
    ],
)
def test_a_ticket_smuggled_in_next_is_dropped(target):
    out = with_ticket(target, "MINE")
    assert "ATTACKER" not in out and out.endswith("ticket=MINE") and out.count("icket=") == 1


def test_other_parameters_keep_their_separators():
    assert with_ticket("/pages/x?a=1;b=2&ticket=X;c=3", "MINE") == "/pages/x?a=1;b=2;c=3&ticket=MINE"
