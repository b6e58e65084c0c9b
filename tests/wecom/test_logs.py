"""Secrets and tokens never reach logs, exception text or reprs — httpx's own log lines included."""

from __future__ import annotations

import logging
import traceback

import pytest

from bot.wecom import APIError, BadCredentials, TransportError, WeComClient
from bot.wecom._redact import redact_url

TOKEN = "TOKEN-REAL-1"


def leaks(caplog, secrets):
    found = []
    for r in caplog.records:
        text = r.getMessage() + " " + " ".join(str(v) for v in vars(r).values())
        if r.exc_info:
            text += "".join(traceback.format_exception(*r.exc_info))
        found += [(r.name, s) for s in secrets if s in text]
    found += [("caplog.text", s) for s in secrets if s in caplog.text]
    return found


def exception_text(e: BaseException) -> str:
    return str(e) + repr(e) + "".join(traceback.format_exception(e)) + repr(vars(e))


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "wqbot.wecom"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_failing_calls_leak_no_secret_or_token(settings, counting_wecom, debug_logs, sleeps):
    from settings import load
    from tests.conftest import TEST_ENV

    s = load(env={**TEST_ENV, "WECOM_API_BASE": counting_wecom.base}, dotenv=None)
    secrets = [*s.secret_values, TOKEN]
    c = WeComClient(s, sleep=sleeps)
    raised = []

    # a refused gettoken (the secret is in gettoken's query string)
    counting_wecom.answers["/cgi-bin/gettoken"] = {"errcode": 40001, "errmsg": "invalid credential"}
    with pytest.raises(BadCredentials) as e:
        c.agent_get()
    raised.append(e.value)
    del counting_wecom.answers["/cgi-bin/gettoken"]
    c = WeComClient(s, sleep=sleeps)  # the first one remembers the refusal for a minute

    # 60020 on a call (the token is in the query string), with an errmsg that echoes the token
    counting_wecom.answers["/cgi-bin/user/get"] = {
        "errcode": 60020,
        "errmsg": f"not allow to access from your ip, access_token {TOKEN}, from ip: 203.0.113.7",
    }
    with pytest.raises(APIError) as e:
        c.user_get("zhangsan")
    raised.append(e.value)
    assert "203.0.113.7" in e.value.hint and TOKEN not in e.value.errmsg

    # 5xx, retried then given up
    counting_wecom.answers["/cgi-bin/department/get"] = {"_status": 502, "errcode": -1}
    with pytest.raises(TransportError) as e:
        c.department_get(1)
    raised.append(e.value)

    # an OAuth code is a credential too
    counting_wecom.answers["/cgi-bin/auth/getuserinfo"] = {"errcode": 40029, "errmsg": "invalid code"}
    code = "-".join(("CODE", "DO", "NOT", "LOG", "1234"))  # not a literal: tracebacks quote source lines
    with pytest.raises(APIError) as e:
        c.auth_getuserinfo(code)
    raised.append(e.value)
    secrets.append(code)

    assert not leaks(debug_logs, secrets)
    for err in raised:
        for secret in secrets:
            assert secret not in exception_text(err), (type(err).__name__, secret)
    # the test can fail: httpx did log the requests, with the credentials masked
    lines = [r.getMessage() for r in debug_logs.records if r.name == "httpx"]
    assert any("corpsecret=****" in x for x in lines) and any("access_token=****" in x for x in lines)
    assert any(r.name.startswith("httpcore") for r in debug_logs.records)
    assert any(r.name == "wqbot.wecom" and "retrying" in r.getMessage() for r in debug_logs.records)


def test_a_timeout_does_not_chain_httpx_errors_that_carry_the_url(make_client, wecom, settings):
    import httpx

    wecom.router.get("http://wecom.test/cgi-bin/agent/get").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransportError) as e:
        make_client().agent_get()
    assert "TOKEN-1" not in exception_text(e.value)
    chained = e.value.__cause__ or e.value.__context__
    assert chained is None


def test_redact_url_masks_credential_query_values():
    url = "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=S3CR3T&x=1"
    assert redact_url(url) == "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=****&x=1"
    assert (
        redact_url("/cgi-bin/user/get?access_token=abc.def-ghi&userid=u")
        == "/cgi-bin/user/get?access_token=****&userid=u"
    )
    assert redact_url("/auth/getuserinfo?code=C0DE") == "/auth/getuserinfo?code=****"
