"""Every errcode class and its hint, through the client; configuration errors are never retried."""

from __future__ import annotations

import httpx
import pytest

from bot.wecom import (
    APIError,
    BadCredentials,
    InvalidCode,
    IPNotAllowed,
    NoPrivilege,
    NotFound,
    RateLimited,
    TokenInvalid,
    TransportError,
    WeComError,
)
from bot.wecom._errors import from_response, hint_for, parse_ip

from .conftest import BASE

IP_MSG = (
    "not allow to access from your ip, hint: [1700000000_12_abc], from ip: 203.0.113.7, "
    "more info at https://open.work.weixin.qq.com/devtool/query?e=60020"
)

# errcode, class, words the hint must contain (what to change), config error?
CASES = [
    (40056, APIError, ["WECOM_AGENT_ID", "应用管理"], True),
    (60020, IPNotAllowed, ["203.0.113.7", "企业可信IP", "应用管理 → 自建应用"], True),
    (48002, NoPrivilege, ["通讯录同步", "app secret"], True),
    (48009, NoPrivilege, ["2022-08-15", "user/list_id", "可见范围"], True),
    (60011, NoPrivilege, ["可见范围", "WECOM_CONTACTS_SECRET"], True),
    (50001, NoPrivilege, ["可信域名", "PUBLIC_URL"], True),
    (301002, NoPrivilege, ["WECOM_APP_SECRET", "WECOM_AGENT_ID"], True),
    (50003, NoPrivilege, ["disabled", "应用管理"], True),
    (60021, NoPrivilege, ["可见范围"], False),
    (50002, NoPrivilege, ["可见范围"], False),
    (60111, NotFound, ["does not exist"], False),
    (46004, NotFound, ["mobile"], False),
    (60123, NotFound, ["department"], False),
    (60003, NotFound, ["department"], False),
    (46003, NotFound, ["no menu"], False),
    (40029, InvalidCode, ["login", "5 minutes"], False),
    (81013, APIError, ["recipient", "可见范围"], False),
    (82001, APIError, ["recipient"], False),
    (40003, APIError, ["userid"], False),
    (40058, APIError, ["parameters"], False),
]


@pytest.mark.parametrize("errcode,cls,words,config", CASES, ids=[str(c[0]) for c in CASES])
def test_errcode_raises_its_class_with_a_hint_and_is_not_retried(
    make_client, wecom, sleeps, errcode, cls, words, config
):
    errmsg = IP_MSG if errcode == 60020 else f"error {errcode}"
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").respond(json={"errcode": errcode, "errmsg": errmsg})
    with pytest.raises(APIError) as e:
        make_client().agent_get()
    err = e.value
    assert type(err) is cls
    assert err.errcode == errcode and err.errmsg == errmsg and err.path == "/cgi-bin/agent/get"
    for w in words:
        assert w in err.hint, (w, err.hint)
    assert err.hint in str(err) and str(errcode) in str(err)
    assert err.is_config_error is config and not err.retryable
    assert route.call_count == 1 and sleeps == [] and wecom.gettoken_calls == 1


def test_60020_carries_the_ip_from_errmsg(make_client, wecom):
    wecom.router.get(f"{BASE}/cgi-bin/agent/get").respond(json={"errcode": 60020, "errmsg": IP_MSG})
    with pytest.raises(IPNotAllowed) as e:
        make_client().agent_get()
    assert e.value.ip == "203.0.113.7"
    assert e.value.hint.startswith("add 203.0.113.7 to 企业可信IP")


def test_60020_without_an_ip_still_says_where_to_go():
    err = from_response(60020, "not allow to access from your ip")
    assert isinstance(err, IPNotAllowed) and err.ip is None and "企业可信IP" in err.hint
    assert parse_ip("x from ip: 2001:db8::1, more") == "2001:db8::1"


@pytest.mark.parametrize(
    "errcode,words", [(40001, ["WECOM_APP_SECRET", "Secret"]), (40013, ["WECOM_CORP_ID", "企业ID"])]
)
def test_gettoken_refusal_is_bad_credentials_and_not_retried(make_client, settings, errcode, words, sleeps):
    import respx

    with respx.mock() as router:
        route = router.get(f"{BASE}/cgi-bin/gettoken").respond(
            json={"errcode": errcode, "errmsg": "invalid credential"}
        )
        with pytest.raises(BadCredentials) as e:
            make_client().agent_get()
    assert route.call_count == 1 and sleeps == []
    assert e.value.is_config_error and all(w in e.value.hint for w in words)
    assert settings.wecom_app_secret not in str(e.value) + repr(e.value)


def test_token_errors_are_token_invalid_with_hints():
    for code in (40014, 42001, 40001):
        err = from_response(code, "x")
        assert isinstance(err, TokenInvalid) and err.hint
    assert "fetched once" in hint_for(42001)


def test_rate_errors_are_rate_limited_and_retryable():
    for code in (45009, 45033):
        err = from_response(code, "api freq out of limit")
        assert isinstance(err, RateLimited) and err.retryable and err.retry_after == 60.0 and err.hint
    assert "WECOM_RATE_LIMIT_PER_MIN" in hint_for(45009)


def test_unknown_errcode_is_a_plain_api_error():
    err = from_response(99999, "something new")
    assert type(err) is APIError and err.hint == "" and str(err) == "errcode 99999: something new"


def test_busy_and_transport_errors_are_retryable():
    assert from_response(-1, "system busy").retryable
    assert TransportError("/x", "timed out").retryable
    assert issubclass(TransportError, WeComError) and issubclass(APIError, WeComError)


def test_non_json_answer_is_a_transport_error_naming_the_setting(make_client, wecom, sleeps):
    wecom.router.get(f"{BASE}/cgi-bin/agent/get").respond(200, text="<html>proxy login</html>")
    with pytest.raises(TransportError) as e:
        make_client().agent_get()
    assert "WECOM_API_BASE" in str(e.value)


def test_unexpected_http_status_is_not_retried(make_client, wecom, sleeps):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(return_value=httpx.Response(404))
    with pytest.raises(APIError) as e:
        make_client().agent_get()
    assert e.value.errcode == -2 and "WECOM_API_BASE" in e.value.hint and route.call_count == 1 and sleeps == []


def test_errors_copy_and_pickle_with_their_attributes():
    import copy
    import pickle

    for err in (
        from_response(60020, IP_MSG, "/cgi-bin/user/get"),
        from_response(45009, "x"),
        from_response(40001, "bad", "/cgi-bin/gettoken", gettoken=True),
        TransportError("/p", "timed out"),
    ):
        for again in (copy.copy(err), pickle.loads(pickle.dumps(err))):
            assert type(again) is type(err) and vars(again) == vars(err) and str(again) == str(err)


def test_an_answer_without_a_numeric_errcode_is_a_transport_error(make_client, wecom, sleeps):
    wecom.router.get(f"{BASE}/cgi-bin/agent/get").respond(json={"errcode": "oops"})
    with pytest.raises(TransportError) as e:
        make_client().agent_get()
    assert "WECOM_API_BASE" in str(e.value)
