"""/admin/wecom: the settings the console saves (encrypted, audited, environment wins), the checks
before saving, live reload, and what the 开启企业微信 switch does."""

from __future__ import annotations

import re
from typing import cast

import httpx
import pytest
import respx
from starlette.testclient import TestClient

import settings as settings_mod
from bot.ops import console_settings as cs
from settings import LiveSettings, Settings
from store.console import ConsoleChange, ConsoleSetting
from tests.conftest import TEST_ENV

PASSWORD = "correct horse battery staple"
CORP, AGENT = "wwconsole0001", "1000005"
APP_SECRET = "console-app-secret-NEVER-SHOWN-8e41"
CONTACTS_SECRET = "console-contacts-secret-NEVER-SHOWN-2c77"
TOKEN = "ConsoleT0kenNeverShown"
AES = "BvluMXaJSmrivhqi8EPrQGiww9Wp2BN50kzaCNNzQxy"
SECRETS = (APP_SECRET, CONTACTS_SECRET, TOKEN, AES)
SETUP_ENV = {
    k: TEST_ENV[k]
    for k in ("SECRET_KEY", "PUBLIC_URL", "WECOM_API_BASE", "DATABASE_URL", "QUEUE_URL", "H5_URL", "PC_URL")
} | {"ADMIN_PASSWORD": PASSWORD}


class FakeCorp:
    """gettoken / agent/get / department/list as WeCom answers them for one corp (respx)."""

    def __init__(self, mock: respx.MockRouter):
        self.secrets = {APP_SECRET: "tok-app-1", CONTACTS_SECRET: "tok-contacts-1"}
        self.domain = "wqbot.example.com"
        self.gettokens: list[str] = []
        mock.route(host="wecom.test").mock(side_effect=self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        q = dict(request.url.params)
        path = request.url.path
        if path == "/cgi-bin/gettoken":
            self.gettokens.append(q.get("corpsecret", ""))
            if q.get("corpid") != CORP:
                return httpx.Response(200, json={"errcode": 40013, "errmsg": "invalid corpid"})
            tok = self.secrets.get(q.get("corpsecret", ""))
            if tok is None:
                return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
            return httpx.Response(200, json={"errcode": 0, "access_token": tok, "expires_in": 7200})
        if path == "/cgi-bin/agent/get":
            if q.get("agentid") != AGENT:
                return httpx.Response(200, json={"errcode": 40056, "errmsg": "invalid agentid"})
            return httpx.Response(200, json={"errcode": 0, "name": "微签", "redirect_domain": self.domain, "close": 0})
        if path == "/cgi-bin/department/list":
            return httpx.Response(200, json={"errcode": 0, "department": [{"id": 1, "name": "总公司", "parentid": 0}]})
        if path == "/cgi-bin/user/list":
            return httpx.Response(200, json={"errcode": 0, "userlist": []})
        return httpx.Response(200, json={"errcode": 0})


@pytest.fixture
def live(store):
    cs.install()
    return LiveSettings(env=dict(SETUP_ENV), dotenv=None)


@pytest.fixture
def corp():
    from bot.wecom import reset_clients

    reset_clients()
    with respx.mock(assert_all_called=False) as mock:
        yield FakeCorp(mock)
    reset_clients()


@pytest.fixture
def console(live, corp):
    from bot.app import create_app

    with TestClient(create_app(cast(Settings, live), init_store=False), base_url="https://wqbot.example.com") as c:
        page = c.get("/admin/login")
        nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text).group(1)
        assert c.post("/admin/login", data={"login_nonce": nonce, "password": PASSWORD}).status_code == 200
        yield c


def csrf(c) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', c.get("/admin/wecom").text).group(1)


def fill(**overrides) -> dict[str, str]:
    form = {
        "WECOM_CORP_ID": CORP,
        "WECOM_AGENT_ID": AGENT,
        "WECOM_APP_SECRET": APP_SECRET,
        "WECOM_CONTACTS_SECRET": CONTACTS_SECRET,
        "WECOM_TOKEN": TOKEN,
        "WECOM_AES_KEY": AES,
        "SYNC_MATCH_FIELD": "userid",
        "WECOM_ENABLED": "on",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def save(c, **overrides):
    return c.post("/admin/wecom", data={"csrf": csrf(c), **fill(**overrides)}, follow_redirects=False)


def test_setup_mode_answers_not_configured_everywhere(console, live):
    assert not live.wecom_configured and not live.wecom_enabled
    page = console.get("/admin/wecom")
    assert page.status_code == 200 and "企业微信尚未配置" in page.text
    assert "https://wqbot.example.com/wx/login" in page.text and "wqbot.example.com" in page.text
    r = console.get("/wecom/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "n", "echostr": "e"})
    assert r.status_code == 503 and "not configured yet" in r.text and "/admin/wecom" in r.text
    r = console.get("/oauth/h5")
    assert r.status_code == 503 and "企业微信尚未配置" in r.text
    r = console.get("/api/v1/org/users", headers={"Authorization": "Bearer "})
    assert r.status_code == 503 and r.json()["error"] == "not_configured"


def test_a_wrong_secret_is_shown_at_its_field_and_not_saved(console, corp):
    r = save(console, WECOM_APP_SECRET="wrong-secret-for-the-app")
    assert r.status_code == 400
    field = re.search(r'id="error-WECOM_APP_SECRET">([^<]+)<', r.text).group(1)
    assert "自建应用密钥不正确（40001）" in field and "Secret" in field
    assert "仍然保存" in r.text and "wrong-secret-for-the-app" not in r.text
    assert ConsoleSetting.select().count() == 0
    # wrong corp id → the 企业ID field; wrong agent → 应用ID; a domain WeCom does not trust → 可信域名
    r = save(console, WECOM_CORP_ID="wwwrongcorp")
    assert "企业ID 不正确（40013）" in re.search(r'id="error-WECOM_CORP_ID">([^<]+)<', r.text).group(1)
    r = save(console, WECOM_AGENT_ID="1000099")
    assert "应用ID 1000099" in re.search(r'id="error-WECOM_AGENT_ID">([^<]+)<', r.text).group(1)
    corp.domain = "other.example.com"
    r = save(console)
    assert "可信域名是“other.example.com”" in re.search(r'id="error-trusted-domain">([^<]+)<', r.text).group(1)
    # 仍然保存: stored anyway, and the record says which check failed
    r = save(console, force="on")
    assert r.status_code == 303 and ConsoleChange.get().checks == "仍然保存: _trusted_domain"
    # a malformed value never reaches WeCom
    n = len(corp.gettokens)
    r = save(console, WECOM_AES_KEY="short")
    assert r.status_code == 400 and "EncodingAESKey" in r.text and len(corp.gettokens) == n


def test_saved_settings_are_encrypted_audited_and_live(console, live, corp):
    r = save(console)
    assert r.status_code == 303 and r.headers["location"] == "/admin/wecom?done=wecom_saved"
    rows = dict(ConsoleSetting.select(ConsoleSetting.name, ConsoleSetting.value).tuples())
    assert rows["WECOM_CORP_ID"] == CORP and rows["WECOM_ENABLED"] == "true"
    for name in ("WECOM_APP_SECRET", "WECOM_CONTACTS_SECRET", "WECOM_TOKEN", "WECOM_AES_KEY"):
        assert rows[name].startswith("gcm:") and all(s not in rows[name] for s in SECRETS)
    change = ConsoleChange.get()
    assert change.userid == "admin" and change.checks == "ok"
    assert set(change.fields.split(",")) == set(fill())
    # this process sees it at once; the page shows secrets only as 已设置 (no character of them), and the record
    assert live.wecom_configured and live.wecom_enabled and live.wecom_app_secret == APP_SECRET
    page = console.get("/admin/wecom?done=wecom_saved").text
    assert "已设置" in page and "修改记录" in page and "WECOM_APP_SECRET" in page
    assert all(s not in page and f"…{s[-2:]}" not in page for s in SECRETS)
    # saving again unchanged (secrets left empty keep theirs) writes nothing
    r = save(console, WECOM_APP_SECRET="", WECOM_CONTACTS_SECRET="", WECOM_TOKEN="", WECOM_AES_KEY="")
    assert r.headers["location"] == "/admin/wecom?done=wecom_unchanged" and ConsoleChange.select().count() == 1


def test_another_process_picks_up_a_change_within_the_refresh(live, store, monkeypatch):
    other = LiveSettings(env=dict(SETUP_ENV), dotenv=None)  # a second process's view
    assert other.wecom_agent_id == 0
    assert cs.REFRESH <= 5  # well within the 10 s promised
    cs.save(
        cast(Settings, live), "admin", {"WECOM_CORP_ID": CORP, "WECOM_AGENT_ID": AGENT, "WECOM_APP_SECRET": APP_SECRET}
    )
    assert other.wecom_agent_id == 0  # checked less than REFRESH ago: not yet
    other.__dict__["checked_at"] -= cs.REFRESH
    assert other.wecom_agent_id == int(AGENT) and other.wecom_app_secret == APP_SECRET


def test_a_changed_secret_drops_its_cached_tokens(console, live, corp):
    from bot.wecom import client_for

    save(console)
    first = client_for(cast(Settings, live))
    assert first.token() == "tok-app-1" and corp.gettokens.count(APP_SECRET) >= 1
    corp.secrets["rotated-app-secret-NEVER-SHOWN-11"] = "tok-app-2"
    r = save(console, WECOM_APP_SECRET="rotated-app-secret-NEVER-SHOWN-11")
    assert r.status_code == 303
    second = client_for(cast(Settings, live))
    assert second is not first and second.token() == "tok-app-2"
    assert first.tokens._entries == {}  # the old secret's token is gone from this process


def test_the_environment_wins_and_is_not_editable(store, corp):
    from bot.app import create_app

    cs.install()
    env = {**SETUP_ENV, "WECOM_CORP_ID": CORP, "WECOM_APP_SECRET": APP_SECRET}
    live = LiveSettings(env=env, dotenv=None)
    with TestClient(create_app(cast(Settings, live), init_store=False), base_url="https://wqbot.example.com") as c:
        page = c.get("/admin/login")
        nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text).group(1)
        c.post("/admin/login", data={"login_nonce": nonce, "password": PASSWORD})
        page = c.get("/admin/wecom").text
        assert page.count("由环境变量设置") == 2 and 'name="WECOM_CORP_ID"' not in page and APP_SECRET not in page
        r = save(c, WECOM_CORP_ID="wwsomethingelse", WECOM_APP_SECRET="another-secret-value")
        assert r.status_code == 303
    stored = cs.stored_values(live.secret_key)
    assert "WECOM_CORP_ID" not in stored and "WECOM_APP_SECRET" not in stored
    assert live.wecom_corp_id == CORP


def test_switch_on_starts_a_full_sync_and_releases_held_pushes_off_holds_them(
    console, live, corp, immediate_queue, monkeypatch
):
    from bot.ops.jobs import sync_now

    monkeypatch.setattr(settings_mod, "_current", live)  # the queue's tasks read these settings too
    from store.directory import SyncRun
    from store.notifications import Notification

    save(console, WECOM_ENABLED=None)  # saved with the switch off
    assert not live.wecom_enabled and SyncRun.select().count() == 0
    # off: login entries show the Chinese off page, pushes are held with a clear status
    r = console.get("/wx/qrlogin")
    assert r.status_code == 503 and "企业微信登录已关闭" in r.text
    from bot.notify import intake, push
    from bot.notify.request import parse
    from tests.notify.support import notification

    intake.accept(parse(notification(id="wq-held-1")))
    assert push.run("wq-held-1", cast(Settings, live)) == "held"
    assert "开启企业微信 is off" in Notification.get().error
    # on: a full sync at once (the queue runs it here), held pushes queued again
    assert sync_now.name == "ops.sync_now"
    save(console)
    assert live.wecom_enabled
    run = SyncRun.get()
    assert run.trigger == "admin" and run.full
    assert Notification.get().status != "held"


def test_changing_the_match_field_on_the_page_relinks(console, live, corp):
    from store.directory import User

    save(console)
    User.create(userid="u1", name="一", alias="Emp.1", active=True, match_key="u1", account="u1")
    User.create(userid="u2", name="二", alias="emp.2", active=True, match_key="u2", account="u2")
    save(console, SYNC_MATCH_FIELD="alias")
    assert dict(User.select(User.userid, User.account).tuples()) == {"u1": "Emp.1", "u2": "emp.2"}
    assert "SYNC_MATCH_FIELD" in ConsoleChange.select().order_by(ConsoleChange.id.desc()).get().fields
    r = save(console, SYNC_MATCH_FIELD="extattr:")
    assert r.status_code == 400 and "公有属性格式不正确" in r.text


def test_csv_override_upload_and_report_export(console, live, corp):
    from store.directory import User

    save(console)
    User.create(userid="u1", name="一", active=True, match_key="u1", account="u1")
    User.create(userid="u2", name="二", active=True, match_key="u2", account="u2")
    token = csrf(console)
    r = console.post(
        "/admin/wecom/accounts", data={"csrf": token, "mapping": "u1,shared\nu2,shared\n"}, follow_redirects=False
    )
    assert r.status_code == 303
    page = console.get("/admin/wecom").text
    assert re.search(r'id="ambiguous-count">1<', page) and "一（u1）、二（u2）" in page
    csv_text = console.get("/admin/wecom/accounts.csv").text
    assert "ambiguous,u1,一,shared" in csv_text and "ambiguous,u2,二,shared" in csv_text
    r = console.post("/admin/wecom/accounts", data={"csrf": token, "mapping": "u1,a,b\n"})
    assert r.status_code == 400 and "line 1" in r.text
    r = console.post("/admin/wecom/accounts", data={"csrf": "forged", "mapping": "u1,x\n"})
    assert r.status_code == 403


def test_the_page_needs_a_login_and_a_csrf_token(live, corp, store):
    from bot.app import create_app

    with TestClient(create_app(cast(Settings, live), init_store=False), base_url="https://wqbot.example.com") as c:
        assert c.get("/admin/wecom", follow_redirects=False).headers["location"] == "/admin/login"
        assert c.post("/admin/wecom", data=fill(), follow_redirects=False).status_code == 303
    assert ConsoleSetting.select().count() == 0


def test_a_stored_secret_under_another_secret_key_is_left_out(live, store, caplog):
    cs.save(cast(Settings, live), "admin", {"WECOM_APP_SECRET": APP_SECRET})
    other = settings_mod.load(env={**SETUP_ENV, "SECRET_KEY": "another-secret-key-entirely"}, dotenv=None)
    assert "WECOM_APP_SECRET" not in cs.stored_values(other.secret_key)
    assert "cannot be decrypted" in caplog.text and APP_SECRET not in caplog.text


def test_no_secret_set_on_the_console_reaches_a_page_log_metric_or_error(console, live, corp, store):
    import io
    import logging

    from bot.observability import logs
    from bot.ops.doctor import Doctor
    from bot.wecom import client_for
    from store.ops import AdminAudit, OpsError

    typed_wrong = "wrong-app-secret-NEVER-SHOWN-e5"
    planted = (*SECRETS, typed_wrong, SETUP_ENV["SECRET_KEY"])
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buf = io.StringIO()
    logs.setup(fmt="json", level="DEBUG", stream=buf)
    seen: list[str] = []
    try:
        seen.append(save(console, WECOM_APP_SECRET=typed_wrong).text)  # the field error page
        seen.append(save(console, WECOM_AES_KEY=AES[:-1]).text)  # a malformed secret
        r = save(console)
        assert r.status_code == 303
        assert live.wecom_app_secret == APP_SECRET
        # the client's requests (gettoken carries the secret in its query), its errors
        wecom = client_for(cast(Settings, live))
        wecom.token()
        logging.getLogger("wqbot.test").info("secret in a message %s", APP_SECRET, extra={"detail": TOKEN})
        corp.secrets.pop(APP_SECRET)
        wecom.tokens._entries.clear()
        try:
            wecom.token()
        except Exception as e:
            seen.append(str(e) + repr(e))
        for path in (
            "/admin",
            "/admin/wecom",
            "/admin/directory",
            "/admin/notifications",
            "/admin/webhooks",
            "/admin/wecom/accounts.csv",
            "/metrics",
            "/healthz",
            "/readyz",
            "/oauth/h5",
            "/wx/qrlogin",
            "/api/v1/org/users",
        ):
            resp = console.get(path, follow_redirects=False)
            seen.append(resp.text + str(resp.headers))
        resp = console.get(
            "/wecom/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "n", "echostr": "e"}
        )
        seen.append(resp.text)
        seen.append(repr(live) + repr(live.snapshot()) + str(live.masked()))
        d = Doctor(settings=live.snapshot())
        d.check_settings()
        d.check_tokens()
        seen.extend(c.line() for c in d.checks)
        seen.extend(str(x.__data__) for x in (*ConsoleChange.select(), *OpsError.select(), *AdminAudit.select()))
        logs.flush()
        seen.append(buf.getvalue())
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logs._filter = None
    text = "\n".join(seen)
    assert "gettoken" in text and "settings changed on the console" in text  # the logs were captured
    for secret in planted:
        assert secret not in text, secret


def test_doctor_reads_the_merged_view(live, store, corp):
    from bot.ops.doctor import Doctor

    d = Doctor(env=dict(SETUP_ENV))
    assert d.check_settings() is False and "WECOM_CORP_ID: is not set" in d.checks[0].line()
    assert "企业微信参数 page (/admin/wecom)" in d.checks[0].line()
    cs.save(
        cast(Settings, live),
        "admin",
        {
            "WECOM_CORP_ID": CORP,
            "WECOM_AGENT_ID": AGENT,
            "WECOM_APP_SECRET": APP_SECRET,
            "WECOM_TOKEN": TOKEN,
            "WECOM_AES_KEY": AES,
        },
    )
    d = Doctor(env=dict(SETUP_ENV))
    assert d.check_settings() is True
    assert d.loaded().wecom_corp_id == CORP and d.loaded().wecom_app_secret == APP_SECRET
    d.check_tokens()
    assert d.checks[-1].ok and corp.gettokens[-1] == APP_SECRET


def test_switched_off_on_the_console_callbacks_are_verified_and_acked_but_not_applied(console, live, corp):
    from bot.app import create_app
    from bot.server import stack
    from store.directory import User
    from tests.support import CONTACTS_URL, CallbackClient, message

    save(console, WECOM_ENABLED=None, WECOM_CONTACTS_TOKEN="ContactsT0kenConsole", WECOM_CONTACTS_AES_KEY=AES)
    assert not live.wecom_enabled and live.contacts_callback_enabled
    joined = message(
        MsgType="event", Event="change_contact", ChangeType="create_user", UserID="newbie", Name="新人", Department="1"
    )
    with CallbackClient(live.snapshot(), stack(create_app(cast(Settings, live), init_store=False))) as wecom:
        answer = wecom.callback(joined, CONTACTS_URL)
        assert answer.status == 200  # verified and acknowledged
        assert User.get_or_none(User.userid == "newbie") is None  # but not applied
        save(console)  # on again
        assert live.wecom_enabled
        assert wecom.callback(joined.replace("新人", "新人甲"), CONTACTS_URL).status == 200
        assert User.get(User.userid == "newbie").name == "新人甲"


def test_a_token_rotated_on_the_console_signs_the_next_callback(console, live, corp):
    """The callback endpoint reads the settings' snapshot per request and builds its crypto once
    per snapshot: a Token saved on the page is the one the next delivery is checked against."""
    from bot.app import create_app
    from bot.server import stack
    from tests.support import CallbackClient, message

    save(console)
    app = stack(create_app(cast(Settings, live), init_store=False))
    click = message(MsgType="event", Event="click", EventKey="help")
    old = live.snapshot()
    with CallbackClient(old, app) as wecom:
        assert wecom.callback(click).status == 200
        assert save(console, WECOM_TOKEN="RotatedConsoleT0ken").status_code == 303
        assert wecom.callback(click.replace("help", "help ")).status == 403  # the old Token's signature
    with CallbackClient(live.snapshot(), app) as wecom:
        assert live.snapshot() is not old
        assert wecom.callback(click.replace("help", "help  ")).status == 200
