"""Retries, backoff, the one token retry, paging and timeouts (respx at WeCom's HTTP edge)."""

from __future__ import annotations

import json

import httpx
import pytest

from bot.wecom import APIError, RateLimited, TokenInvalid, TransportError
from bot.wecom._client import BACKOFF_BASE, MAX_RETRIES, RATE_BACKOFF

from .conftest import BASE


def ok(**fields):
    return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", **fields})


def err(code, msg="x"):
    return httpx.Response(200, json={"errcode": code, "errmsg": msg})


def assert_backoff(sleeps, n):
    """n delays, each within its capped exponential step with jitter (50-100 % of the step)."""
    assert len(sleeps) == n, sleeps
    for i, d in enumerate(sleeps):
        step = BACKOFF_BASE * 2**i
        assert step / 2 <= d <= step, (i, d)


# -- tokens -------------------------------------------------------------------------------------------
def test_token_is_fetched_once_and_sent_in_the_query(make_client, wecom):
    route = wecom.api("GET", "/cgi-bin/user/get", {"userid": "zhangsan", "name": "张三"})
    c = make_client()
    assert c.user_get("zhangsan") == {"userid": "zhangsan", "name": "张三"}
    assert c.user_get("zhangsan")["name"] == "张三"
    assert wecom.gettoken_calls == 1 and route.call_count == 2
    q = route.calls[0].request.url.params
    assert q["access_token"] == "TOKEN-1" and q["userid"] == "zhangsan"
    g = wecom.gettoken.calls[0].request.url.params
    assert g["corpid"] == c.settings.wecom_corp_id and g["corpsecret"] == c.settings.wecom_app_secret


def test_contacts_credentials_use_their_own_secret_and_token(make_client, wecom, settings):
    wecom.router.post(f"{BASE}/cgi-bin/user/list_id").mock(return_value=ok(dept_user=[], next_cursor=""))
    wecom.api("GET", "/cgi-bin/agent/get", {"agentid": 1})
    c = make_client()
    list(c.user_list_id())
    secrets_used = [call.request.url.params["corpsecret"] for call in wecom.gettoken.calls]
    assert secrets_used == [settings.wecom_contacts_secret]
    c.agent_get()
    assert [call.request.url.params["corpsecret"] for call in wecom.gettoken.calls][1] == settings.wecom_app_secret


def test_one_retry_after_a_token_error_with_a_fresh_token(make_client, wecom):
    route = wecom.api("GET", "/cgi-bin/agent/get", {"agentid": 1000002})
    c = make_client()
    c.agent_get()
    wecom.token = "TOKEN-2"  # WeCom invalidated the first token early
    assert c.agent_get()["agentid"] == 1000002
    assert wecom.gettoken_calls == 2 and route.call_count == 3
    assert route.calls[-1].request.url.params["access_token"] == "TOKEN-2"


@pytest.mark.parametrize("code", [40014, 42001, 40001])
def test_a_token_error_is_retried_exactly_once(make_client, wecom, sleeps, code):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(return_value=err(code))
    with pytest.raises(TokenInvalid) as e:
        make_client().agent_get()
    assert e.value.errcode == code
    assert route.call_count == 2 and wecom.gettoken_calls == 2 and sleeps == []


def test_a_token_that_another_caller_already_replaced_is_not_fetched_again(make_client, wecom):
    """stale= drops the cached token only if it is the one that failed."""
    c = make_client()
    assert c.token() == "TOKEN-1"
    wecom.token = "TOKEN-2"
    assert c.token(stale="TOKEN-1") == "TOKEN-2"  # the failed one: refreshed
    assert c.token(stale="TOKEN-1") == "TOKEN-2"  # already replaced: kept
    assert wecom.gettoken_calls == 2


# -- retries and backoff ------------------------------------------------------------------------------
def test_busy_is_retried_with_capped_exponential_backoff(make_client, wecom, sleeps):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(
        side_effect=[err(-1, "system busy"), err(-1, "system busy"), err(-1, "system busy"), ok(agentid=1)]
    )
    assert make_client().agent_get() == {"agentid": 1}
    assert route.call_count == 4
    assert_backoff(sleeps, 3)


def test_busy_gives_up_after_three_retries(make_client, wecom, sleeps):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(return_value=err(-1, "system busy"))
    with pytest.raises(APIError) as e:
        make_client().agent_get()
    assert e.value.errcode == -1 and e.value.retryable
    assert route.call_count == MAX_RETRIES + 1
    assert_backoff(sleeps, MAX_RETRIES)


def test_backoff_is_capped(monkeypatch, make_client, wecom, sleeps):
    from bot.wecom import _client

    monkeypatch.setattr(_client, "MAX_RETRIES", 8)
    wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(return_value=err(-1))
    with pytest.raises(APIError):
        make_client().agent_get()
    assert len(sleeps) == 8 and max(sleeps) <= _client.BACKOFF_CAP and sleeps[-1] >= _client.BACKOFF_CAP / 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(502),
        httpx.Response(503, text="busy"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no route"),
        httpx.RemoteProtocolError("closed"),
    ],
)
def test_network_failures_and_5xx_are_retried(make_client, wecom, sleeps, failure):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(side_effect=[failure, failure, ok(agentid=1)])
    assert make_client().agent_get() == {"agentid": 1}
    assert route.call_count == 3
    assert_backoff(sleeps, 2)


def test_persistent_timeouts_end_in_a_transport_error(make_client, wecom, sleeps):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransportError) as e:
        make_client().agent_get()
    assert route.call_count == MAX_RETRIES + 1 and "timed out" in str(e.value)
    # the httpx exception (which carries the request URL with the token) is not chained
    assert e.value.__cause__ is None and e.value.__context__ is None


@pytest.mark.parametrize("code", [45009, 45033])
def test_rate_limit_backs_off_longer_then_retries_once(make_client, wecom, sleeps, code):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(
        side_effect=[err(code, "api freq out of limit"), ok(agentid=1)]
    )
    assert make_client().agent_get() == {"agentid": 1}
    assert route.call_count == 2
    assert len(sleeps) == 1 and RATE_BACKOFF - 0.5 <= sleeps[0] <= RATE_BACKOFF * 1.5


def test_rate_limit_twice_raises_rate_limited(make_client, wecom, sleeps):
    route = wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(return_value=err(45009, "api freq out of limit"))
    with pytest.raises(RateLimited) as e:
        make_client().agent_get()
    assert route.call_count == 2 and len(sleeps) == 1 and sleeps[0] >= RATE_BACKOFF - 0.5
    assert e.value.retry_after == 60.0


def test_rate_limit_holds_the_api_back_for_other_callers(make_client, wecom, sleeps):
    wecom.router.get(f"{BASE}/cgi-bin/agent/get").mock(side_effect=[err(45009), ok(), ok()])
    wecom.api("GET", "/cgi-bin/menu/get", {"button": []})
    c = make_client()
    c.agent_get()
    held = len(sleeps)
    c.menu_get()  # another API: not held back
    assert len(sleeps) == held
    c.agent_get()  # the same API, still inside the hold (the fake sleep did not pass time)
    assert len(sleeps) == held + 1 and sleeps[-1] > RATE_BACKOFF / 2


def test_the_client_side_limiter_refuses_rather_than_waiting_too_long(make_client, wecom, settings):
    from bot.wecom._ratelimit import Limits, LocalRateLimiter

    wecom.api("GET", "/cgi-bin/agent/get")
    c = make_client(limiter=LocalRateLimiter(Limits(per_min=8, per_hour=1000)), rate_max_wait=0.0)
    c.agent_get()  # burst 1: the first call passes
    with pytest.raises(RateLimited) as e:
        c.agent_get()
    assert "client-side" in e.value.errmsg and "WECOM_RATE_LIMIT_PER_MIN" in e.value.hint


# -- calls that must not be repeated ------------------------------------------------------------------
@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), httpx.Response(502), httpx.RemoteProtocolError("x")])
def test_message_send_is_not_retried_when_it_may_have_arrived(make_client, wecom, sleeps, failure):
    route = wecom.router.post(f"{BASE}/cgi-bin/message/send").mock(side_effect=[failure, ok(msgid="m1")])
    with pytest.raises(TransportError) as e:
        make_client().message_send({"touser": "zhangsan", "msgtype": "text", "text": {"content": "hi"}})
    assert route.call_count == 1 and sleeps == [] and "not retried" in str(e.value)


@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("x"), err(-1, "busy")])
def test_message_send_is_retried_when_it_cannot_have_arrived(make_client, wecom, sleeps, failure):
    route = wecom.api("POST", "/cgi-bin/message/send", {"msgid": "m1"})
    route.side_effect = [failure, ok(msgid="m1")]
    answer = make_client().message_send({"touser": "zhangsan", "msgtype": "text", "text": {"content": "hi"}})
    assert answer["msgid"] == "m1" and route.call_count == 2 and len(sleeps) == 1
    body = json.loads(route.calls[0].request.content)
    assert body["agentid"] == 1000002 and body["touser"] == "zhangsan"


def test_every_request_has_a_timeout_even_with_a_callers_http_client(make_client, wecom):
    route = wecom.api("GET", "/cgi-bin/agent/get")
    c = make_client(http=httpx.Client(timeout=None))
    c.agent_get()
    for call in (route.calls[0], wecom.gettoken.calls[0]):
        t = call.request.extensions["timeout"]
        assert t["read"] == 10.0 and t["connect"] == 5.0


# -- typed methods --------------------------------------------------------------------------------------
def test_user_list_id_pages_lazily_to_the_end(make_client, wecom):
    pages = {
        None: ok(next_cursor="c1", dept_user=[{"userid": "a", "department": 1}, {"userid": "b", "department": 1}]),
        "c1": ok(next_cursor="c2", dept_user=[{"userid": "b", "department": 2}]),
        "c2": ok(next_cursor="", dept_user=[{"userid": "c", "department": 3}]),
    }
    bodies = []

    def page(request):
        body = json.loads(request.content)
        bodies.append(body)
        if request.url.params["access_token"] != wecom.token:
            return err(42001)
        return pages[body.get("cursor")]

    route = wecom.router.post(f"{BASE}/cgi-bin/user/list_id").mock(side_effect=page)
    rows = make_client().user_list_id(limit=2)
    first = next(rows)
    assert first == {"userid": "a", "department": 1} and route.call_count == 1  # lazy
    rest = list(rows)
    assert [r["userid"] for r in [first, *rest]] == ["a", "b", "b", "c"]
    assert bodies == [{"limit": 2}, {"limit": 2, "cursor": "c1"}, {"limit": 2, "cursor": "c2"}]


def test_user_list_id_survives_a_token_expiring_mid_paging(make_client, wecom):
    def page(request):
        if request.url.params["access_token"] != wecom.token:
            return err(42001)
        body = json.loads(request.content)
        if body.get("cursor") is None:
            wecom.token = "TOKEN-2"  # expires right after the first page
            return ok(next_cursor="c1", dept_user=[{"userid": "a", "department": 1}])
        return ok(next_cursor="", dept_user=[{"userid": "b", "department": 1}])

    wecom.router.post(f"{BASE}/cgi-bin/user/list_id").mock(side_effect=page)
    assert [r["userid"] for r in make_client().user_list_id()] == ["a", "b"]
    assert wecom.gettoken_calls == 2


def test_typed_methods_hit_the_documented_endpoints(make_client, wecom):
    agent = {"agentid": 1000002}
    wecom.api("GET", "/cgi-bin/department/list", {"department": [{"id": 1}]})
    wecom.api("GET", "/cgi-bin/department/simplelist", {"department_id": [{"id": 1, "parentid": 0}]})
    wecom.api("GET", "/cgi-bin/department/get", {"department": {"id": 2}})
    wecom.api("GET", "/cgi-bin/user/list", {"userlist": [{"userid": "a"}]})
    wecom.api("GET", "/cgi-bin/user/simplelist", {"userlist": [{"userid": "b"}]})
    wecom.api("POST", "/cgi-bin/user/getuserid", {"userid": "c"})
    wecom.api("GET", "/cgi-bin/auth/getuserinfo", {"userid": "d", "user_ticket": "UT"})
    wecom.api("POST", "/cgi-bin/auth/getuserdetail", {"userid": "d", "mobile": "13800000000"})
    wecom.api("POST", "/cgi-bin/message/update_template_card", {"invaliduser": []})
    wecom.api("POST", "/cgi-bin/message/recall")
    menu_create = wecom.api("POST", "/cgi-bin/menu/create")
    wecom.api("GET", "/cgi-bin/menu/get", {"button": [{"type": "click", "name": "x", "key": "k"}]})
    menu_delete = wecom.api("GET", "/cgi-bin/menu/delete")
    wecom.api("GET", "/cgi-bin/agent/get", agent)
    wecom.api("GET", "/cgi-bin/get_jsapi_ticket", {"ticket": "JT", "expires_in": 7200})
    agent_ticket = wecom.api("GET", "/cgi-bin/ticket/get", {"ticket": "AT", "expires_in": 7200})
    c = make_client()
    assert c.department_list() == [{"id": 1}]
    assert c.department_simplelist(1) == [{"id": 1, "parentid": 0}]
    assert c.department_get(2) == {"id": 2}
    assert c.user_list(1, fetch_child=True) == [{"userid": "a"}]
    assert c.user_simplelist(1) == [{"userid": "b"}]
    assert c.user_getuserid("13800000000") == "c"
    assert c.auth_getuserinfo("CODE") == {"userid": "d", "user_ticket": "UT"}
    assert c.auth_getuserdetail("UT")["mobile"] == "13800000000"
    c.update_template_card({"userids": ["a"], "response_code": "rc", "button": {"replace_name": "已同意"}})
    c.message_recall("m1")
    c.menu_create({"button": []})
    assert c.menu_get() == {"button": [{"type": "click", "name": "x", "key": "k"}]}
    c.menu_delete()
    assert c.agent_get() == agent
    assert c.jsapi_ticket() == "JT" and c.jsapi_ticket() == "JT"
    assert c.agent_jsapi_ticket() == "AT" and c.agent_jsapi_ticket() == "AT"
    assert agent_ticket.call_count == 1 and agent_ticket.calls[0].request.url.params["type"] == "agent_config"
    assert menu_create.calls[0].request.url.params["agentid"] == "1000002"
    assert menu_delete.calls[0].request.url.params["agentid"] == "1000002"
    assert wecom.gettoken_calls == 1


def test_client_repr_shows_no_secret(make_client, settings):
    c = make_client()
    text = repr(c) + repr(c.tokens) + repr(c.limiter)
    assert settings.wecom_app_secret not in text and settings.wecom_contacts_secret not in text
