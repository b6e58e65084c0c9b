"""`wqbot doctor`: each check passing and failing, WeCom faked at its HTTP edge (respx), the
callback URL answered by the real app (TestClient)."""

from __future__ import annotations

import io
from email.utils import formatdate

import httpx
import pytest
import respx
from starlette.testclient import TestClient

import settings as settings_mod
from bot.ops.doctor import Doctor, main
from tests.conftest import TEST_ENV

API = TEST_ENV["WECOM_API_BASE"]


def make_settings(**env):
    merged = {**TEST_ENV, **env}
    return settings_mod.load(env={k: v for k, v in merged.items() if v is not None}, dotenv=None)


def fake_wecom(
    router,
    *,
    app_token=None,
    contacts_token=None,
    agent=None,
    dept_contacts=None,
    dept_app=None,
    simplelist=None,
    date=None,
):
    """A WeCom API at API with the given answers (dicts are WeCom JSON bodies)."""
    headers = {"Date": date or formatdate(usegmt=True)}

    def ok(**body):
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", **body}, headers=headers)

    def reply(value, default):
        if value is None:
            return default
        return httpx.Response(200, json=value, headers=headers) if isinstance(value, dict) else value

    def gettoken(request):
        secret = request.url.params.get("corpsecret")
        if secret == TEST_ENV["WECOM_CONTACTS_SECRET"]:
            return reply(contacts_token, ok(access_token="CONTACTS-TOKEN", expires_in=7200))
        if secret == TEST_ENV["WECOM_APP_SECRET"]:
            return reply(app_token, ok(access_token="APP-TOKEN", expires_in=7200))
        return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"}, headers=headers)

    def department_list(request):
        if request.url.params["access_token"] == "CONTACTS-TOKEN":
            return reply(dept_contacts, ok(department=[{"id": 1, "name": "总部", "parentid": 0}] * 3))
        return reply(dept_app, ok(department=[{"id": 2, "name": "开发部", "parentid": 1}]))

    router.get(f"{API}/cgi-bin/gettoken").mock(side_effect=gettoken)
    router.get(f"{API}/cgi-bin/agent/get").mock(
        return_value=reply(
            agent,
            ok(
                agentid=1000002,
                name="微签",
                close=0,
                redirect_domain="wqbot.example.com",
                allow_partys={"partyid": [2]},
            ),
        )
    )
    router.get(f"{API}/cgi-bin/department/list").mock(side_effect=department_list)
    router.get(f"{API}/cgi-bin/department/simplelist").mock(
        return_value=reply(
            simplelist, ok(department_id=[{"id": 1, "parentid": 0, "order": 1}, {"id": 2, "parentid": 1, "order": 1}])
        )
    )
    router.get(f"{API}/cgi-bin/getcallbackip").mock(
        return_value=httpx.Response(200, json={"errcode": 41001, "errmsg": "access_token missing"}, headers=headers)
    )
    return router


@pytest.fixture(autouse=True)
def _fresh_clients():
    from bot.wecom import reset_clients

    reset_clients()
    yield
    reset_clients()


@pytest.fixture
def app_http(app):
    with TestClient(app) as c:
        yield c


def run(settings, http, **kw) -> Doctor:
    from bot.wecom import client_for

    client_for(settings)._sleep = lambda s: None
    d = Doctor(settings, http=http, **kw)
    d.run()
    return d


def by_name(d: Doctor) -> dict:
    out = {}
    for c in d.checks:
        out.setdefault(c.name, c)
    return out


def test_everything_right_passes_and_exits_zero(settings, store, app_http, capsys):
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router)
        d = run(settings, app_http)
    checks = by_name(d)
    assert all(c.ok for c in d.checks), [c.line() for c in d.checks if not c.ok]
    assert set(checks) >= {
        "settings",
        "store",
        "queue",
        "https",
        "gettoken (WECOM_APP_SECRET)",
        "gettoken (WECOM_CONTACTS_SECRET)",
        "可信域名",
        "directory",
        "callback",
        "contacts callback",
        "clock",
    }
    assert "sync uses mode list (department/list" in checks["directory"].detail
    for c in d.checks:
        assert c.line().startswith("✓ ")
    text = "\n".join(c.line() for c in d.checks)
    for secret in settings.secret_values:
        assert secret not in text


def test_main_prints_one_line_per_check_and_exits_nonzero_on_failure(monkeypatch, store):
    # The CLI path: settings from the environment; a missing variable is one ✗ line naming it.
    monkeypatch.delenv("WECOM_AGENT_ID")
    out = io.StringIO()
    assert main(None, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("✗ settings: WECOM_AGENT_ID: is not set (WeCom is not configured yet)")
    assert "fill 应用ID on the console's 企业微信参数 page (/admin/wecom), or set WECOM_AGENT_ID" in lines[0]
    assert lines[-1] == "0 passed, 1 failed"


def test_cli_exit_code(store, tmp_path):
    from bot.cli import main as cli

    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router, app_token=httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"}))
        router.get(url__startswith=TEST_ENV["PUBLIC_URL"]).mock(return_value=httpx.Response(502))
        assert cli(["doctor"]) == 1


@pytest.mark.parametrize(
    "env, expect",
    [
        ({"WECOM_AES_KEY": "short"}, "WECOM_AES_KEY"),
        ({"PUBLIC_URL": "wqbot.example.com"}, "PUBLIC_URL: must be an http:// or https:// URL"),
        ({"WECOM_CORP_ID": "企业"}, "WECOM_CORP_ID"),
    ],
)
def test_malformed_settings_name_the_variable(env, expect):
    d = Doctor(env={**TEST_ENV, **env})
    d.run()
    assert len(d.checks) == 1 and not d.checks[0].ok
    assert expect in d.checks[0].detail and "fix:" in d.checks[0].line()


@pytest.mark.parametrize(
    "env, expect, fix",
    [
        ({"PUBLIC_URL": "https://wq.example.com/wqbot"}, "PUBLIC_URL has a path", "origin only"),
        (
            {"WECOM_API_BASE": "https://qyapi.weixin.qq.com", "PUBLIC_URL": "http://127.0.0.1:8000"},
            "cannot be reached by WeCom",
            "可信域名",
        ),
        (
            {"WECOM_API_BASE": "https://qyapi.weixin.qq.com", "PUBLIC_URL": "https://1.2.3.4"},
            "uses an IP address",
            "domain name",
        ),
        ({"SECRET_KEY": "short"}, "SECRET_KEY is shorter", "SECRET_KEY"),
        ({"WECOM_CONTACTS_SECRET": TEST_ENV["WECOM_APP_SECRET"]}, "equals WECOM_APP_SECRET", "通讯录同步"),
    ],
)
def test_suspicious_settings_fail(env, expect, fix):
    d = Doctor(make_settings(**env))
    d.check_settings()
    bad = [c for c in d.checks if not c.ok]
    assert bad and expect in bad[0].detail and fix in bad[0].fix


def test_store_and_queue_unreachable(settings):
    s = make_settings(DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing", QUEUE_URL="redis://127.0.0.1:1/0")
    d = Doctor(s)
    d.check_store_and_queue()
    store_check, queue_check = d.checks
    assert not store_check.ok and "DATABASE_URL" in store_check.fix
    assert not queue_check.ok and "QUEUE_URL" in queue_check.fix


def test_store_and_queue_reachable(settings, store):
    d = Doctor(settings)
    d.check_store_and_queue()
    assert all(c.ok for c in d.checks), d.checks
    assert "0601_ops_tables" in d.checks[0].detail or "latest" in d.checks[0].detail


def test_wrong_app_secret_names_the_console_page(settings, store, app_http):
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router, app_token=httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"}))
        d = run(settings, app_http)
        # one gettoken per secret: a wrong secret is never retried (WeCom bans the IP for an hour)
        app_gettokens = [
            c
            for c in router.calls
            if c.request.url.path == "/cgi-bin/gettoken"
            and c.request.url.params["corpsecret"] == TEST_ENV["WECOM_APP_SECRET"]
        ]
    c = by_name(d)["gettoken (WECOM_APP_SECRET)"]
    assert not c.ok and "40001" in c.detail
    assert "WECOM_APP_SECRET" in c.fix and "应用管理 → 自建应用 → Secret" in c.fix
    assert len(app_gettokens) == 1, [(c.request.url.path, dict(c.request.url.params)) for c in router.calls]
    assert not by_name(d)["agent/get"].ok and "gettoken" in by_name(d)["agent/get"].fix


def test_wrong_corp_id(settings, store, app_http):
    with respx.mock(assert_all_called=False) as router:
        bad = httpx.Response(200, json={"errcode": 40013, "errmsg": "invalid corpid"})
        fake_wecom(router, app_token=bad, contacts_token=bad)
        d = run(settings, app_http)
    c = by_name(d)["gettoken (WECOM_APP_SECRET)"]
    assert not c.ok and "我的企业 → 企业信息" in c.fix and "WECOM_CORP_ID" in c.fix


def test_60020_names_the_exact_ip_and_the_trusted_ip_page(settings, store, app_http):
    msg = (
        "not allow to access from your ip, hint: [1700000000_1_abc], from ip: 203.0.113.9, "
        "more info at https://open.work.weixin.qq.com/devtool/query?e=60020"
    )
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(
            router,
            app_token=httpx.Response(200, json={"errcode": 60020, "errmsg": msg}),
            contacts_token=httpx.Response(200, json={"errcode": 60020, "errmsg": msg}),
        )
        d = run(settings, app_http)
    app = by_name(d)["gettoken (WECOM_APP_SECRET)"]
    contacts = by_name(d)["gettoken (WECOM_CONTACTS_SECRET)"]
    assert not app.ok and "add 203.0.113.9 to 应用管理 → 自建应用 → 企业可信IP" in app.fix
    assert not contacts.ok and "add 203.0.113.9 to 管理工具 → 通讯录同步 → 企业可信IP" in contacts.fix


def test_redirect_domain_mismatch(settings, store, app_http):
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(
            router,
            agent={"errcode": 0, "agentid": 1000002, "name": "微签", "close": 0, "redirect_domain": "sign.example.com"},
        )
        d = run(settings, app_http)
    c = by_name(d)["可信域名"]
    assert not c.ok and "sign.example.com" in c.detail and "wqbot.example.com" in c.detail
    assert "网页授权及JS-SDK → 可信域名 to wqbot.example.com" in c.fix


def test_redirect_domain_port_must_match(store, app_http):
    s = make_settings(PUBLIC_URL="https://wqbot.example.com:8443")
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router)  # trusts wqbot.example.com, without the port
        d = run(s, app_http)
    c = by_name(d)["可信域名"]
    assert not c.ok and "wqbot.example.com:8443" in c.detail and "port included" in c.detail


def test_default_port_written_in_public_url(store, app_http):
    s = make_settings(PUBLIC_URL="https://wqbot.example.com:443")
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router)
        d = run(s, app_http)
    c = by_name(d)["可信域名"]
    assert not c.ok and "set PUBLIC_URL to https://wqbot.example.com" in c.fix


def test_no_trusted_domain_and_wrong_agent(settings, store, app_http):
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router, agent={"errcode": 0, "agentid": 1000002, "name": "微签", "close": 0, "redirect_domain": ""})
        d = run(settings, app_http)
    assert not by_name(d)["可信域名"].ok and "no 可信域名" in by_name(d)["可信域名"].detail
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router, agent={"errcode": 301002, "errmsg": "not allow operate another agent with this accesstoken"})
        d = run(settings, app_http)
    c = by_name(d)["agent/get"]
    assert not c.ok and "301002" in c.detail and "WECOM_AGENT_ID" in c.fix


def test_contacts_secret_48009_reports_the_ids_mode(settings, store, app_http):
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router, dept_contacts={"errcode": 48009, "errmsg": "api forbidden for new ip"})
        d = run(settings, app_http)
    c = by_name(d)["directory"]
    assert c.ok and "48009" in c.detail and "mode list_id" in c.detail and "2 departments" in c.detail


def test_without_contacts_secret_sync_reads_the_visible_range(store, app_http):
    s = make_settings(WECOM_CONTACTS_SECRET="")
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router)
        d = run(s, app_http)
    names = by_name(d)
    assert "gettoken (WECOM_CONTACTS_SECRET)" not in names
    assert names["directory"].ok and "mode list with the app secret" in names["directory"].detail


def test_empty_visible_range_fails(store, app_http):
    s = make_settings(WECOM_CONTACTS_SECRET="")
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router, dept_app={"errcode": 0, "department": []})
        d = run(s, app_http)
    c = by_name(d)["directory"]
    assert not c.ok and "可见范围" in c.fix


def test_callback_with_other_token_is_reported(settings, store):
    from bot.app import create_app

    other = make_settings(WECOM_TOKEN="SomeoneElsesToken")
    with TestClient(create_app(other, init_store=False)) as foreign:
        with respx.mock(assert_all_called=False) as router:
            fake_wecom(router)
            d = run(settings, foreign)
    c = by_name(d)["callback"]
    assert not c.ok and "refused our signature" in c.detail and "WECOM_TOKEN" in c.fix


def test_callback_unreachable_and_redirected(settings, store):
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router)
        d = Doctor(settings, http=httpx.Client(transport=httpx.MockTransport(refuse)))
        d.check_callback()
    assert not d.checks[0].ok and "not reachable" in d.checks[0].detail and "nginx" in d.checks[0].fix

    moved = httpx.MockTransport(lambda r: httpx.Response(301, headers={"location": "https://other.example.com/"}))
    d = Doctor(settings, http=httpx.Client(transport=moved))
    d.check_callback()
    assert not d.checks[0].ok and "redirects" in d.checks[0].detail


def test_https_mismatch(store):
    d = Doctor(make_settings(PUBLIC_URL="http://wqbot.example.com"))
    d.check_https()
    c = d.checks[0]
    assert not c.ok and "H5_URL and PC_URL use https" in c.detail and "--proxy-headers" in c.fix
    d = Doctor(make_settings(PUBLIC_URL="http://wqbot.example.com", H5_URL="http://sign.example.com/h5/", PC_URL=""))
    d.check_https()
    assert d.checks[0].ok


def test_clock_skew(settings):
    import time

    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router, date=formatdate(time.time() - 600, usegmt=True))
        d = Doctor(settings)
        d.check_clock()
    c = d.checks[0]
    assert not c.ok and "600 s ahead" in c.detail.replace("599", "600").replace("601", "600") and "ntp" in c.fix
    with respx.mock(assert_all_called=False) as router:
        fake_wecom(router)
        d = Doctor(settings)
        d.check_clock()
    assert d.checks[0].ok
