"""The 微签 admin's way, in headless Chromium: `wqbot serve` starts with no WeCom settings at all
(setup mode), the admin fills 企业微信参数 on /admin/wecom, gets a wrong 自建应用密钥 pointed out at
its field, corrects it, saves with 开启企业微信 on; the directory syncs from the emulator; a QR login
works; then the switch goes off: the login entry shows the Chinese off page and a push is held.
Real processes on 127.0.0.1 (`wqbot sim`, `wqbot serve`, plus `wqbot worker` on PostgreSQL + Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser import Browser, chromium_path
from tests.conftest import BACKEND, TEST_ENV
from tests.notify.support import notification
from tests.ops.test_admin_browser import free_port, start, stop

PASSWORD = "first-setup-password-42"
SIM_USERS = 12
TIMEOUT = 30.0
AUTH = {"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]}
WECOM = ("WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_APP_SECRET", "WECOM_CONTACTS_SECRET")


def poll(what: str, fn, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def fill_form(page: Browser, app_secret: str, enabled: bool) -> None:
    values = {name: TEST_ENV[name] for name in WECOM} | {"WECOM_APP_SECRET": app_secret}
    for name, value in values.items():
        page.evaluate(f"document.getElementById('in-{name}').value = {json.dumps(value)}")
    # the callback pairs from the page's own 随机生成 buttons
    for name in ("WECOM_TOKEN", "WECOM_AES_KEY"):
        page.evaluate(f"document.querySelector('[data-target=in-{name}]').click()")
    page.evaluate(f"document.getElementById('in-WECOM_ENABLED').checked = {'true' if enabled else 'false'}")


def test_serve_starts_with_only_a_secret_key_and_an_admin_password(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "ADMIN_", "SYNC_", "PUBLIC_", "H5_", "PC_")
        )
    }
    env |= {"SECRET_KEY": TEST_ENV["SECRET_KEY"], "ADMIN_PASSWORD": PASSWORD, "WQBOT_QUEUE_NAME": f"wqbot-setup-{port}"}
    proc = start(["serve", "--port", str(port)], env, tmp_path, f"{url}/healthz")  # SQLite files in tmp_path
    try:
        assert httpx.get(f"{url}/admin/login").status_code == 200
        r = httpx.post(f"{url}/wecom/callback?msg_signature=x&timestamp=1&nonce=n", content=b"<xml/>")
        assert r.status_code == 503 and "not configured yet" in r.text and "/admin/wecom" in r.text
        r = httpx.get(f"{url}/oauth/h5")
        assert r.status_code == 503 and "企业微信尚未配置" in r.text
        r = httpx.get(f"{url}/api/v1/org/users", headers={"Authorization": "Bearer x"})
        assert r.status_code == 503 and "WEIQIAN_API_TOKEN" in r.json()["message"]
    finally:
        stop(proc)
    assert "setup mode: WeCom is not configured yet" in (tmp_path / "serve.log").read_text()


@pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (.ci/install-extras installs Debian's)")
def test_full_setup_from_an_empty_configuration(tmp_path, store):  # store: PostgreSQL starts empty too
    sim_port, web_port = free_port(), free_port()
    sim_url, web_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{web_port}"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "PROMETHEUS_", "ADMIN_", "SYNC_"))
    }
    queue = f"wqbot-setup-browser-{web_port}"
    # the emulator plays the corp whose values the admin will type in
    sim_env = {**base, **TEST_ENV, "PUBLIC_URL": web_url, "WQBOT_QUEUE_NAME": queue}
    # wqbot: nothing about WeCom but where its (emulated) servers are
    env = {
        **base,
        "SECRET_KEY": TEST_ENV["SECRET_KEY"],
        "ADMIN_PASSWORD": PASSWORD,
        "PUBLIC_URL": web_url,
        "WECOM_API_BASE": sim_url,
        "WECOM_OAUTH_BASE": sim_url,
        "WECOM_SSO_BASE": sim_url,
        "WEIQIAN_API_TOKEN": TEST_ENV["WEIQIAN_API_TOKEN"],
        "PC_URL": f"{sim_url}/pc/",
        "H5_URL": f"{sim_url}/h5/",
        "SYNC_INTERVAL_MINUTES": str(366 * 24 * 60),  # only the switch may start a sync here
        "WQBOT_QUEUE_NAME": queue,
    }
    if BACKEND == "sqlite":
        env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'wqbot.db'}", QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}")
    else:
        env.update(DATABASE_URL=TEST_ENV["DATABASE_URL"], QUEUE_URL=TEST_ENV["QUEUE_URL"])
    procs: list[subprocess.Popen] = []
    page = None
    try:
        procs.append(
            start(
                ["sim", "--port", str(sim_port), "--users", str(SIM_USERS), "--departments", "4", "--seed", "5"],
                sim_env,
                tmp_path,
                f"{sim_url}/cgi-bin/gettoken",
            )
        )
        procs.append(start(["serve", "--port", str(web_port)], env, tmp_path, f"{web_url}/healthz"))
        if BACKEND == "pg":
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", "worker", "--workers", "1"],
                    env=env,
                    cwd=tmp_path,
                    stdout=open(tmp_path / "worker.log", "w"),
                    stderr=subprocess.STDOUT,
                )
            )
        # setup mode: WeCom's endpoints say so
        r = httpx.get(
            f"{web_url}/wecom/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "n", "echostr": "e"}
        )
        assert r.status_code == 503 and "not configured yet" in r.text

        page = Browser(chromium_path())
        page.goto(f"{web_url}/admin/login")
        page.wait_for("!!document.querySelector('#password-login')", "the login page")
        page.evaluate(f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)}")
        page.click("#password-login button")
        page.wait_for("location.pathname === '/admin'", "the status page")
        page.goto(f"{web_url}/admin/wecom")
        page.wait_for("!!document.querySelector('#wecom-form')", "the 企业微信参数 page")
        assert "企业微信尚未配置" in page.text("#setup-mode")
        assert page.text("#redirect-url") == f"{web_url}/wx/login"
        assert page.text("#trusted-domain") == f"127.0.0.1:{web_port}"

        # a wrong 自建应用密钥: the error is shown at its field, nothing is saved
        fill_form(page, "a-wrong-app-secret-typed-in", enabled=True)
        assert len(page.evaluate("document.getElementById('in-WECOM_TOKEN').value")) == 32
        assert len(page.evaluate("document.getElementById('in-WECOM_AES_KEY').value")) == 43
        page.click("#save")
        page.wait_for("!!document.querySelector('#error-WECOM_APP_SECRET')", "the field's error")
        assert "自建应用密钥不正确（40001）" in page.text("#error-WECOM_APP_SECRET")
        assert "a-wrong-app-secret-typed-in" not in page.evaluate("document.documentElement.outerHTML")

        # corrected: saved, and with the switch on a full sync starts at once
        fill_form(page, TEST_ENV["WECOM_APP_SECRET"], enabled=True)
        page.click("#save")
        page.wait_for("!!document.querySelector('#notice')", "the saved notice")
        assert "已保存" in page.text("#notice")
        html = page.evaluate("document.documentElement.outerHTML")
        assert TEST_ENV["WECOM_APP_SECRET"] not in html and TEST_ENV["WECOM_CONTACTS_SECRET"] not in html
        assert "已设置 (…9c)" in html and "WECOM_APP_SECRET" in page.text("#history")

        users = poll(
            "the directory synced from the emulator",
            lambda: (
                (r := httpx.get(f"{web_url}/api/v1/org/users?limit=100", headers=AUTH)).status_code == 200
                and len(r.json()["users"]) >= SIM_USERS - 2
                and r.json()["users"]
            ),
        )
        member = next(u for u in users if u["active"])

        # a QR login works through the emulator's SSO page
        page.goto(f"{web_url}/wx/qrlogin")
        link = f'a.user[href*="sim_userid={member["userid"]}"]'
        page.wait_for(f"!!document.querySelector('{link}')", "the emulator's QR login page")
        page.evaluate(f"document.querySelector('{link}').click()")
        href = poll("the landing with a ticket", lambda: "ticket=" in (h := page.evaluate("location.href")) and h)
        ticket = parse_qs(urlsplit(href).query)["ticket"][0]
        v = httpx.post(f"{web_url}/api/v1/tickets/validate", json={"ticket": ticket}, headers=AUTH).json()
        assert v["userid"] == member["userid"] and v["via"] == "pc"

        # switch off: the login entry shows the off page, a push is held (and not lost)
        page.goto(f"{web_url}/admin/wecom")
        page.wait_for("!!document.querySelector('#in-WECOM_ENABLED')", "the 企业微信参数 page")
        page.evaluate("document.getElementById('in-WECOM_ENABLED').checked = false")
        page.click("#save")
        page.wait_for("!!document.querySelector('#notice')", "the saved notice")
        page.goto(f"{web_url}/wx/qrlogin")
        page.wait_for("document.body && document.body.innerText.includes('企业微信登录已关闭')", "the off page")
        body = notification(id="wq-setup-held-1", recipients=[member["userid"]])
        r = httpx.post(f"{web_url}/api/v1/notifications", json=body, headers=AUTH)
        assert r.status_code in (200, 202), r.text
        held = poll(
            "the push held",
            lambda: (
                (n := httpx.get(f"{web_url}/api/v1/notifications/wq-setup-held-1", headers=AUTH).json())["status"]
                == "held"
                and n
            ),
        )
        assert "开启企业微信 is off" in held["error"]
        sent = httpx.get(f"{sim_url}/sim/messages", params={"userid": member["userid"]}).json()["messages"]
        assert sent == []
    finally:
        if page is not None:
            page.close()
        for p in reversed(procs):
            stop(p)
