"""Helpers the login tests share: directory members inserted directly, URL and ticket parsing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from httpx import Response

API = "http://wecom.test"
PUBLIC = "https://wqbot.example.com"


def userinfo(mock, body: dict, status: int = 200):
    """Make auth/getuserinfo answer `body` (errcode 0 added unless given)."""
    return mock.get("/cgi-bin/auth/getuserinfo").mock(
        return_value=Response(status, json={"errcode": 0, "errmsg": "ok", **body})
    )


def add_member(
    userid: str,
    name: str = "",
    active: bool = True,
    departments=(1,),
    account: str | None = None,
    mobile: str | None = None,
    email: str | None = None,
    mobile_source: str | None = None,
    email_source: str | None = None,
) -> None:
    from store.directory import User, UserDepartment

    User.create(
        userid=userid,
        name=name or userid,
        active=active,
        status=1 if active else 5,
        account=account,
        mobile=mobile,
        email=email,
        mobile_source=mobile_source,
        email_source=email_source,
        main_department=departments[0] if departments else None,
    )
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
