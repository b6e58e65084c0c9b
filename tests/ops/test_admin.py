"""The admin console: login (password, WeCom QR), signed sessions, CSRF, and what each page shows."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
import respx
from starlette.testclient import TestClient

import settings as settings_mod
from bot.ops import session as sess
from tests.conftest import TEST_ENV

PASSWORD = "correct horse battery staple"


def make_settings(**env):
    return settings_mod.load(
        env={**TEST_ENV, "ADMIN_PASSWORD": PASSWORD, "ADMIN_USERIDS": "boss,it-admin", **env}, dotenv=None
    )


@pytest.fixture
def admin_settings():
    return make_settings()


@pytest.fixture
def console(admin_settings, store):
    from bot.app import create_app
    from bot.wecom import reset_clients

    reset_clients()
    with TestClient(create_app(admin_settings, init_store=False), base_url="https://wqbot.example.com") as c:
        yield c
    reset_clients()


def nonce_of(html: str) -> str:
    return re.search(r'name="login_nonce" value="([^"]+)"', html).group(1)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(c, password=PASSWORD):
    page = c.get("/admin/login")
    return c.post(
        "/admin/login", data={"login_nonce": nonce_of(page.text), "password": password}, follow_redirects=False
    )


def test_pages_need_a_login(console):
    for path in ("/admin", "/admin/directory", "/admin/notifications", "/admin/webhooks"):
        r = console.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    r = console.post("/admin/actions/sync", data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"


def test_password_login_keeps_only_a_hash_in_a_signed_cookie(console, admin_settings):
    r = login(console)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = r.cookies[sess.COOKIE]
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie and "Secure" in set_cookie
    payload = sess.unsign(admin_settings.secret_key, "session", cookie)
    assert payload["via"] == "password" and PASSWORD not in json.dumps(payload) and payload["pw"]
    page = console.get("/admin")
    assert page.status_code == 200 and "运行状态" in page.text and "本地管理员" in page.text
    # a tampered cookie is refused
    console.cookies.set(
        sess.COOKIE,
        cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"),
        domain="wqbot.example.com",
        path="/admin",
    )
    assert console.get("/admin", follow_redirects=False).status_code == 303


def test_wrong_password_and_throttle(console):
    r = login(console, "wrong")
    assert r.status_code == 403 and "密码不正确" in r.text
    for _ in range(4):
        login(console, "wrong")
    r = login(console)  # even the right one: this address is locked out for a while
    assert r.status_code == 429 and "15 分钟" in r.text


def test_login_form_needs_its_own_nonce(console):
    r = console.post("/admin/login", data={"login_nonce": "forged", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 400 and sess.COOKIE not in r.cookies


def test_changing_the_password_ends_password_sessions(console, store):
    from bot.app import create_app

    login(console)
    cookie = console.cookies.get(sess.COOKIE)
    with TestClient(
        create_app(make_settings(ADMIN_PASSWORD="a new password"), init_store=False),
        base_url="https://wqbot.example.com",
    ) as other:
        other.cookies.set(sess.COOKIE, cookie, domain="wqbot.example.com", path="/admin")
        assert other.get("/admin", follow_redirects=False).status_code == 303
    with TestClient(
        create_app(make_settings(ADMIN_PASSWORD=""), init_store=False), base_url="https://wqbot.example.com"
    ) as other:
        other.cookies.set(sess.COOKIE, cookie, domain="wqbot.example.com", path="/admin")
        assert other.get("/admin", follow_redirects=False).status_code == 303
        page = other.get("/admin/login")
        assert 'name="password"' not in page.text and "企业微信扫码登录" in page.text


def test_expired_session_is_refused(admin_settings, store):
    cookie, _ = sess.new_session(admin_settings, "boss", "wecom")
    assert sess.current_admin(admin_settings, cookie).userid == "boss"
    payload = sess.unsign(admin_settings.secret_key, "session", cookie)
    stale = sess.sign(admin_settings.secret_key, "session", {**payload, "exp": time.time() - 1})
    assert sess.current_admin(admin_settings, stale) is None
    other_key = make_settings(SECRET_KEY="another-secret-key-0123456789")
    assert sess.current_admin(other_key, cookie) is None


def test_actions_need_the_csrf_token(console, monkeypatch):
    calls = []
    monkeypatch.setattr("bot.ops.actions.sync_now", lambda s, t="": calls.append(t) or (True, "sync_queued", "q"))
    login(console)
    r = console.post("/admin/actions/sync", data={}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = console.post("/admin/actions/sync", data={"csrf": "not-it"}, follow_redirects=False)
    assert r.status_code == 403
    assert calls == []
    token = csrf_of(console.get("/admin").text)
    r = console.post("/admin/actions/sync", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin?done=sync_queued"
    assert calls == [""]
    page = console.get("/admin?done=sync_queued").text
    assert "已加入同步队列" in page and "sync" in page  # the audit row
    from store.ops import AdminAudit

    assert [(a.userid, a.action) for a in AdminAudit.select()] == [("admin", "sync")]


def test_logout(console):
    login(console)
    token = csrf_of(console.get("/admin").text)
    assert console.post("/admin/logout", data={"csrf": "nope"}).status_code == 403
    r = console.post("/admin/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    assert console.get("/admin", follow_redirects=False).status_code == 303


def test_logout_ends_every_earlier_session_of_that_admin(console, admin_settings, store):
    from bot.app import create_app

    login(console)
    copied = console.cookies.get(sess.COOKIE)  # taken before the logout (another tab, a thief)
    elsewhere, _ = sess.new_session(admin_settings, "boss", "wecom")  # another admin: unaffected
    token = csrf_of(console.get("/admin").text)
    assert console.post("/admin/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    # another web process (a new app on the same store) refuses the copy too
    with TestClient(create_app(admin_settings, init_store=False), base_url="https://wqbot.example.com") as other:
        other.cookies.set(sess.COOKIE, copied, domain="wqbot.example.com", path="/admin")
        assert other.get("/admin", follow_redirects=False).status_code == 303
        other.cookies.set(sess.COOKIE, elsewhere, domain="wqbot.example.com", path="/admin")
        assert other.get("/admin", follow_redirects=False).status_code == 200
    assert sess.current_admin(admin_settings, copied) is None
    # logging in again works at once, and only the new session is valid
    assert login(console).status_code == 303
    assert console.get("/admin", follow_redirects=False).status_code == 200


def test_the_session_is_an_itsdangerous_signature_bound_to_its_purpose(admin_settings, store):
    from itsdangerous import URLSafeSerializer

    cookie, admin = sess.new_session(admin_settings, "boss", "wecom")
    assert sess.current_admin(admin_settings, cookie).csrf == admin.csrf
    # the login-state cookie's signature is not a session's, though both come from SECRET_KEY
    state = sess.sign(admin_settings.secret_key, "login", sess.unsign(admin_settings.secret_key, "session", cookie))
    assert sess.current_admin(admin_settings, state) is None
    # an unsigned or differently-salted payload is refused
    forged = URLSafeSerializer(admin_settings.secret_key).dumps(
        sess.unsign(admin_settings.secret_key, "session", cookie)
    )
    assert sess.current_admin(admin_settings, forged) is None
    assert sess.current_admin(admin_settings, "x" * 5000) is None


# -- password guessing: per client, IPv6 per /64, a global budget, never reset wholesale ------------
def test_many_addresses_cannot_reset_a_locked_out_address(clock):
    throttle = sess.Throttle()
    for _ in range(5):
        throttle.failed("198.51.100.7")
    assert throttle.blocked("198.51.100.7") == "client"
    # one failed guess each from 10,001 other addresses (a botnet): those past the budget are refused
    for n in range(10_001):
        who = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        if throttle.blocked(who) is None:
            throttle.failed(who)
    assert throttle.blocked("198.51.100.7") == "client"  # still locked out
    assert throttle.tracked() <= throttle.budget  # the table stays small without being cleared
    assert throttle.blocked("203.0.113.50") == "everyone"  # the global budget is spent
    clock.advance(throttle.window + 1)  # everything ages out, nothing was cleared early
    assert throttle.blocked("198.51.100.7") is None and throttle.blocked("203.0.113.50") is None
    assert throttle.tracked() == 0


def test_ipv6_clients_are_counted_per_64(clock):
    throttle = sess.Throttle()
    for n in range(5):
        throttle.failed(f"2001:db8:1:2::{n + 1:x}")  # five addresses of one /64
    assert throttle.blocked("2001:db8:1:2:ffff:ffff:ffff:ffff") == "client"
    assert throttle.blocked("2001:db8:1:3::1") is None  # the next /64
    assert sess.client_key("::ffff:192.0.2.9") == "192.0.2.9"
    assert sess.client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"


def test_the_reset_attack_through_the_login_form(console, monkeypatch):
    """Over HTTP: the locked-out address stays locked while other addresses spend the budget."""
    address = {"now": "198.51.100.7"}
    monkeypatch.setattr("bot.ops.admin._client_addr", lambda request: address["now"])
    for _ in range(5):
        login(console, "wrong")
    assert login(console).status_code == 429
    for n in range(120):
        address["now"] = f"10.0.{n >> 8}.{n & 255}"
        login(console, "wrong")
    address["now"] = "198.51.100.7"
    r = login(console)
    assert r.status_code == 429 and "15 分钟" in r.text
    address["now"] = "192.0.2.200"  # a fresh address: the global budget is spent, QR login is offered
    r = login(console)
    assert r.status_code == 429 and "企业微信扫码登录" in r.text


def test_status_page_masks_secrets_and_shows_sync_queue_errors(console, admin_settings, queue):
    from bot.ops.status import record_error
    from store.directory import SyncRun

    t = time.time()
    SyncRun.create(
        trigger="periodic",
        full=True,
        mode="list",
        status="ok",
        started_at=t - 70,
        finished_at=t - 60,
        users_seen=12,
        departments_seen=3,
        created=2,
        disabled=1,
    )
    for _ in range(2):
        record_error(
            "notify.push",
            f"APIError: /cgi-bin/message/send: errcode 60020: from ip: 203.0.113.9 {admin_settings.wecom_app_secret}",
            "add 203.0.113.9 to 企业可信IP under 应用管理 → 自建应用 → 企业可信IP",
        )
    login(console)
    html = console.get("/admin").text
    for secret in admin_settings.secret_values:
        assert secret not in html
    assert "WECOM_APP_SECRET" in html and "已设置" in html
    for secret in admin_settings.secret_values:  # not even a secret's last characters
        assert f"****{secret[-2:]}" not in html
    assert re.search(r'id="sync-status"[^>]*>成功<', html)
    assert "<td>12</td>" in html and "新增成员" in html
    assert "企业可信IP" in html and "<td>2</td>" in html  # one error row, counted twice
    assert 'id="queue-pending">0<' in html


def test_status_page_shows_todays_follow_up(console, clock):
    from store.followup import DigestSent, TaskReminder, WorkbenchTile
    from store.models import KeyValue
    from store.notifications import NotifyTask

    t = clock.at
    for u in ("lisi", "wangwu"):
        TaskReminder.create(task_id="T-1", round=1, userid=u, status="sent", at=t)
    TaskReminder.create(task_id="T-0", round=1, userid="lisi", status="sent", at=t - 3 * 86400)  # another day
    NotifyTask.create(task_id="T-2", kind="approve", title="x", notification="n", state="expired", state_via="deadline")
    WorkbenchTile.create(userid="lisi", approve=1, sign=0, pushed_at=t, dirty=False)
    WorkbenchTile.create(userid="wangwu", approve=1, sign=0, dirty=False, error="errcode 40058: invalid keydata")
    KeyValue.create(key="workbench:template", value="{}")
    DigestSent.create(day="2000-01-01", userid="lisi", body="{}", status="sent")  # not today
    login(console)
    html = console.get("/admin").text
    assert 'id="followup-reminders">2<' in html
    assert 'id="followup-expired">1<' in html
    assert 'id="followup-digests">未开启<' in html  # DIGEST_AT empty
    assert 'id="followup-tiles">1<' in html and 'id="followup-tiles-refused">1<' in html
    assert "errcode 40058" in html


def test_status_page_masks_the_password_of_every_url_setting(store):
    from bot.app import create_app

    s = make_settings(
        DATABASE_URL="postgresql://wqbot:db-pass-DO-NOT-SHOW@db.internal:5432/wqbot",
        QUEUE_URL="redis://:redis-pass-DO-NOT-SHOW@cache.internal:6379/0",
        WEIQIAN_WEBHOOK_SECRET="",
    )
    assert s.masked()["DATABASE_URL"] == "postgresql://wqbot:****@db.internal:5432/wqbot"
    assert s.masked()["QUEUE_URL"] == "redis://:****@cache.internal:6379/0"
    assert s.masked()["WEIQIAN_WEBHOOK_SECRET"] == "未设置" and s.masked()["SECRET_KEY"] == "已设置"
    assert {"db-pass-DO-NOT-SHOW", "redis-pass-DO-NOT-SHOW"} <= set(s.secret_values)  # the log filter masks them
    # the page itself, served on the test store (the console only reads these settings)
    with TestClient(create_app(s, init_store=False), base_url="https://wqbot.example.com") as c:
        login(c)
        html = c.get("/admin").text
    assert "db.internal:5432" in html and "cache.internal" in html
    assert "db-pass-DO-NOT-SHOW" not in html and "redis-pass-DO-NOT-SHOW" not in html


def test_status_page_without_any_sync(console):
    login(console)
    html = console.get("/admin").text
    assert "尚未同步过" in html


def test_directory_tree_with_members(console):
    from store.directory import Department, User, UserDepartment

    Department.insert_many(
        [
            {"id": 1, "name": "复园科技", "parent_id": 0, "order": 100},
            {"id": 2, "name": "市场部", "parent_id": 1, "order": 90},
            {"id": 3, "name": "技术部", "parent_id": 1, "order": 80},
            {"id": 4, "name": "前端组", "parent_id": 3, "order": 1, "active": False},
        ]
    ).execute()
    User.insert_many(
        [
            {"userid": "zhangsan", "name": "张三", "position": "经理"},
            {"userid": "lisi", "name": "李四"},
            {"userid": "wangwu", "name": "王五", "active": False},
            {"userid": "zhaoliu", "name": "赵六"},
        ]
    ).execute()
    UserDepartment.insert_many(
        [
            {"userid": "zhangsan", "department_id": 2},
            {"userid": "lisi", "department_id": 3},
            {"userid": "wangwu", "department_id": 4},
            {"userid": "lisi", "department_id": 2},
        ]
    ).execute()
    login(console)
    html = console.get("/admin/directory").text
    assert "4 个部门，4 名成员（在职 3）" in html and "1 名不在任何部门" in html
    tree = html[html.index('id="tree"') :]
    assert (
        tree.index("复园科技") < tree.index("市场部") < tree.index("张三") < tree.index("技术部") < tree.index("前端组")
    )
    assert tree.index("前端组") < tree.index("王五")
    assert "（ID 2，2 人）" in tree and "已停用" in tree


def test_notifications_and_webhooks_pages(console, monkeypatch):
    from store.notifications import Notification, NotifyRecipient, WebhookDelivery

    Notification.create(
        id="wq-evt-1",
        kind="approve",
        task_id="T-1",
        body=json.dumps({"title": "采购合同"}),
        fingerprint="x",
        status="partial",
    )
    NotifyRecipient.insert_many(
        [
            {"notification": "wq-evt-1", "key": "lisi", "userid": "lisi", "status": "sent"},
            {
                "notification": "wq-evt-1",
                "key": "ghost",
                "userid": "ghost",
                "status": "invalid",
                "reason": "unknown userid",
            },
            {
                "notification": "wq-evt-1",
                "key": "wangwu",
                "userid": "wangwu",
                "status": "failed",
                "reason": "errcode -1",
            },
        ]
    ).execute()
    WebhookDelivery.create(
        id="2f1c4a5e-0000-4000-8000-000000000001",
        event="task.action",
        notification="wq-evt-1",
        body="{}",
        status="failed",
        attempts=8,
        last_status=500,
    )
    WebhookDelivery.create(
        id="2f1c4a5e-0000-4000-8000-000000000002",
        event="task.action",
        body="{}",
        status="delivered",
        attempts=1,
        last_status=200,
    )
    import bot.notify

    login(console)
    html = console.get("/admin/notifications").text
    assert "采购合同" in html and "部分发送" in html
    html = console.get("/admin/notifications").text
    assert "lisi：已送达" in html and "ghost：无效接收人" in html and "wangwu：失败" in html
    assert 'action="/admin/actions/resend"' in html and 'value="wq-evt-1"' in html
    html = console.get("/admin/webhooks").text
    assert html.count('action="/admin/actions/retry-webhook"') == 1
    assert "投递失败" in html and "已投递" in html and "HTTP 500" in html

    calls = []
    monkeypatch.setattr(bot.notify, "resend", lambda nid: calls.append(("resend", nid)) or "queued")
    monkeypatch.setattr(bot.notify, "retry_webhook", lambda did: calls.append(("retry", did)) or "queued")
    token = csrf_of(html)
    r = console.post("/admin/actions/resend", data={"csrf": token, "id": "wq-evt-1"}, follow_redirects=False)
    assert r.headers["location"] == "/admin/notifications?done=resent" and calls == [("resend", "wq-evt-1")]
    # retrying a webhook needs WEIQIAN_WEBHOOK_URL (not set here): the page says so, nothing is called
    r = console.post("/admin/actions/retry-webhook", data={"csrf": token, "id": "2f1c4a5e-0000-4000-8000-000000000001"})
    assert "未设置 WEIQIAN_WEBHOOK_URL" in r.text and len(calls) == 1


def test_an_action_that_does_not_apply_says_why(console):
    from store.notifications import Notification

    Notification.create(id="wq-sent", kind="notice", body="{}", fingerprint="x", status="sent")
    login(console)
    token = csrf_of(console.get("/admin").text)
    r = console.post("/admin/actions/resend", data={"csrf": token, "id": "wq-nope"})
    assert "找不到该记录" in r.text
    r = console.post("/admin/actions/resend", data={"csrf": token, "id": "wq-sent"})
    assert "无需重试" in r.text


def test_sync_now_runs_the_directory_sync(console, immediate_queue, monkeypatch):
    from bot.ops import jobs

    runs = []

    def fake_run_sync(settings, *, trigger="cli", full=False, **kw):
        runs.append((trigger, full))
        from store.directory import SyncRun

        return SyncRun.create(trigger=trigger, full=full, status="ok", finished_at=time.time())

    monkeypatch.setattr(jobs, "run_sync", fake_run_sync)
    login(console)
    token = csrf_of(console.get("/admin").text)
    r = console.post("/admin/actions/sync", data={"csrf": token})
    assert r.status_code == 200 and "已加入同步队列" in r.text
    assert runs == [("admin", True)]


def test_wecom_qr_login_for_admin_userids_only(console, admin_settings):
    def start() -> str:
        r = console.get("/admin/login/wecom", follow_redirects=False)
        assert r.status_code == 302
        location = r.headers["location"]
        assert location.startswith(f"{admin_settings.wecom_sso_base}/wwlogin/sso/login?login_type=CorpApp&appid=")
        assert "redirect_uri=https%3A%2F%2Fwqbot.example.com%2Fadmin%2Flogin%2Fwecom%2Fcallback" in location
        return re.search(r"state=([A-Za-z0-9]+)", location).group(1)

    api = TEST_ENV["WECOM_API_BASE"]
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{api}/cgi-bin/gettoken").mock(
            return_value=httpx.Response(200, json={"errcode": 0, "access_token": "T", "expires_in": 7200})
        )
        users = {"CODE-BOSS": "boss", "CODE-LISI": "lisi"}
        router.get(f"{api}/cgi-bin/auth/getuserinfo").mock(
            side_effect=lambda req: httpx.Response(200, json={"errcode": 0, "userid": users[req.url.params["code"]]})
        )
        r = console.get(f"/admin/login/wecom/callback?code=CODE-LISI&state={start()}", follow_redirects=False)
        assert r.status_code == 403 and "不是管理员" in r.text
        start()
        r = console.get("/admin/login/wecom/callback?code=CODE-BOSS&state=wrongstate", follow_redirects=False)
        assert r.status_code == 403
        state = start()
        r = console.get(f"/admin/login/wecom/callback?code=CODE-BOSS&state={state}", follow_redirects=False)
        assert r.status_code == 303 and sess.COOKIE in r.cookies
        # the state was used up: the same callback again does not log in
        console.cookies.delete(sess.COOKIE)
        r = console.get(f"/admin/login/wecom/callback?code=CODE-BOSS&state={state}", follow_redirects=False)
        assert r.status_code == 403
        r = console.get(f"/admin/login/wecom/callback?code=CODE-BOSS&state={start()}", follow_redirects=False)
        assert r.status_code == 303
    assert "boss" in console.get("/admin").text


def test_wecom_login_ends_when_the_userid_leaves_admin_userids(admin_settings, store):
    cookie, _ = sess.new_session(admin_settings, "boss", "wecom")
    assert sess.current_admin(make_settings(ADMIN_USERIDS="it-admin"), cookie) is None


def test_no_login_method_configured(store):
    from bot.app import create_app

    s = make_settings(ADMIN_PASSWORD="", ADMIN_USERIDS="")
    with TestClient(create_app(s, init_store=False)) as c:
        html = c.get("/admin/login").text
        assert "尚未配置任何登录方式" in html
        assert c.get("/admin/login/wecom").status_code == 403


def test_readyz_requires_a_recent_sync(console, admin_settings):
    from store.directory import SyncRun

    r = console.get("/readyz")
    assert r.status_code == 503 and "no directory sync has completed yet" in r.json()["problems"][0]
    SyncRun.create(trigger="periodic", status="ok", started_at=time.time() - 4000, finished_at=time.time() - 3990)
    r = console.get("/readyz")
    assert r.status_code == 503 and "min ago" in r.json()["problems"][0]
    SyncRun.create(trigger="periodic", status="failed", started_at=time.time() - 5, finished_at=time.time() - 4)
    assert console.get("/readyz").status_code == 503
    SyncRun.create(trigger="periodic", status="ok", started_at=time.time() - 65, finished_at=time.time() - 60)
    r = console.get("/readyz")
    checks = r.json()["checks"]
    assert r.status_code == 200 and checks["store"] == checks["queue"] == "ok" and checks["sync"].startswith("ok (")
    assert console.get("/healthz").json() == {"status": "ok"}


def test_readyz_without_wecom(store):
    from bot.app import create_app

    with TestClient(create_app(make_settings(WECOM_ENABLED="false"), init_store=False)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["sync"].startswith("off")


def test_a_failing_task_is_remembered_with_its_hint(settings, store, immediate_queue):
    from bot.app import build
    from bot.ops.status import recent_errors
    from bot.queue import enqueue, outbox_task, register_task
    from bot.wecom import IPNotAllowed

    build(settings)  # as a worker does: subscribes the failure hook

    @outbox_task("tests.admin.failing", retries=0)
    def failing():
        raise IPNotAllowed(
            60020,
            "not allow to access from your ip, from ip: 203.0.113.9",
            "add 203.0.113.9 to 企业可信IP",
            "/cgi-bin/message/send",
            ip="203.0.113.9",
        )

    register_task(failing)
    enqueue(failing)
    enqueue(failing)
    [e] = recent_errors()
    assert e.source == "tests.admin.failing" and "60020" in e.message and e.hint == "add 203.0.113.9 to 企业可信IP"
    assert e.count == 2 and e.trace_id
