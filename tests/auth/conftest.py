"""Fixtures the login tests share: WeCom faked with respx at its HTTP edge, and a client that
talks to the app at PUBLIC_URL's origin. Plain helpers are in tests/auth/support.py.
"""

from __future__ import annotations

import pytest
import respx
from httpx import Response

from tests.auth.support import API, PUBLIC


@pytest.fixture
def wecom():
    """respx router for WECOM_API_BASE with gettoken and agent/get (可信域名 = PUBLIC_URL's host)."""
    from bot.auth import domain
    from bot.wecom import reset_clients

    reset_clients()
    domain.forget()
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        mock.get("/cgi-bin/gettoken").mock(
            return_value=Response(
                200, json={"errcode": 0, "errmsg": "ok", "access_token": "ACCESS_TOKEN_FOR_TESTS", "expires_in": 7200}
            )
        )
        mock.get("/cgi-bin/agent/get").mock(
            return_value=Response(
                200,
                json={
                    "errcode": 0,
                    "errmsg": "ok",
                    "agentid": 1000002,
                    "name": "微签",
                    "redirect_domain": "wqbot.example.com",
                },
            )
        )
        yield mock
    reset_clients()
    domain.forget()


@pytest.fixture
def login_client(settings, app):
    """The app behind the stack `wqbot serve` runs, at PUBLIC_URL's origin (so the Secure login
    cookie is kept), redirects not followed."""
    from bot.server import stack
    from tests.support import CallbackClient

    with CallbackClient(settings, stack(app), base_url=PUBLIC, follow_redirects=False) as c:
        yield c
