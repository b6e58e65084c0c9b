"""Fixtures and helpers the login tests share (issue 7): WeCom faked with respx at its HTTP edge,
directory members inserted directly, a client that talks to the app at PUBLIC_URL's origin.

Import the fixtures into a test module: `from tests.login_support import wecom, login_client  # noqa: F401`.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import respx
from httpx import Response

API = "http://wecom.test"
PUBLIC = "https://wqbot.example.com"


@pytest.fixture
def wecom():
    """respx router for WECOM_API_BASE with gettoken and agent/get (可信域名 = PUBLIC_URL's host)."""
    from bot.auth import domain
    from bot.wecom import reset_clients

    reset_clients()
    domain.forget()
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        mock.get("/cgi-bin/gettoken").mock(return_value=Response(200, json={
            "errcode": 0, "errmsg": "ok", "access_token": "ACCESS_TOKEN_FOR_TESTS", "expires_in": 7200}))
        mock.get("/cgi-bin/agent/get").mock(return_value=Response(200, json={
            "errcode": 0, "errmsg": "ok", "agentid": 1000002, "name": "微签", "redirect_domain": "wqbot.example.com"}))
        yield mock
    reset_clients()
    domain.forget()


def userinfo(mock, body: dict, status: int = 200):
    """Make auth/getuserinfo answer `body` (errcode 0 added unless given)."""
    return mock.get("/cgi-bin/auth/getuserinfo").mock(
        return_value=Response(status, json={"errcode": 0, "errmsg": "ok", **body}))


@pytest.fixture
def login_client(app):
    """TestClient at PUBLIC_URL's origin (so the Secure login cookie is kept), redirects not followed."""
    from starlette.testclient import TestClient

    with TestClient(app, base_url=PUBLIC, follow_redirects=False) as c:
        yield c


def add_member(userid: str, name: str = "", active: bool = True, departments=(1,), account: str | None = None,
               mobile: str | None = None, email: str | None = None, mobile_source: str | None = None,
               email_source: str | None = None) -> None:
    from store.directory import User, UserDepartment

    User.create(userid=userid, name=name or userid, active=active, status=1 if active else 5, account=account,
                mobile=mobile, email=email, mobile_source=mobile_source, email_source=email_source,
                main_department=departments[0] if departments else None)
    for d in departments:
        UserDepartment.create(userid=userid, department_id=d)


def query(url: str) -> dict[str, str]:
    """The query parameters of `url` (one value each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def start(client, path: str = "/oauth/h5", **params) -> str:
    """GET the login start; returns the state WeCom would echo back."""
    r = client.get(path, params=params)
    assert r.status_code == 302, r.text
    return query(r.headers["location"].split("#", 1)[0])["state"]


def ticket_of(location: str) -> str:
    """The ticket in a landing URL (hash route query or plain query)."""
    base, _, fragment = location.partition("#")
    part = fragment if fragment.startswith("/") else base
    return query(part)["ticket"]
