"""Scaled out (2 × `wqbot serve --no-worker` + 2 × `wqbot worker`, PostgreSQL + Redis): the
自建应用密钥 changed on /admin/wecom is used by every process within 10 s, without a restart.

The emulator is told the new secret at the moment of the save and every token issued for the old
one dies, so after that a call with the app token succeeds only with a token obtained with the
new secret (and the old secret's gettoken is refused with 40001, which the call log would show).
Each web process proves it with a QR login through itself (auth/getuserinfo); each worker with
pushes it sends (message/send), attributed through its own log."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import BACKEND, TEST_ENV
from tests.notify.support import notification
from tests.reliability.cluster import Cluster

pytestmark = pytest.mark.skipif(BACKEND != "pg", reason="the scaled-out shape needs PostgreSQL + Redis")

PASSWORD = "console-reload-password-77"
NEW_SECRET = "rotated-app-secret-NEVER-LOGGED-4Z7"
WITHIN = 10.0


def qr_login(web_url: str, public_url: str, userid: str) -> int:
    """A PC QR login whose callback lands on `web_url`; the status of that callback."""
    with httpx.Client(timeout=10) as c:
        r = c.get(f"{web_url}/wx/qrlogin")
        assert r.status_code == 302, r.text
        r = c.get(r.headers["location"] + f"&sim_userid={userid}")
        assert r.status_code == 302, r.text
        back = urlsplit(r.headers["location"])
        assert f"{back.scheme}://{back.netloc}" == public_url
        return c.get(f"{web_url}{back.path}?{back.query}").status_code


def admin_session(web_url: str) -> httpx.Client:
    c = httpx.Client(base_url=web_url, timeout=20)
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', c.get("/admin/login").text).group(1)
    assert c.post("/admin/login", data={"login_nonce": nonce, "password": PASSWORD}).status_code == 303
    return c


def test_a_secret_changed_on_the_console_reaches_every_process_within_10_s(tmp_path, store, queue):
    from typing import cast

    from bot.ops import console_settings as cs
    from settings import LiveSettings, Settings

    # The app secret lives on the console only (the environment leaves it empty).
    live = LiveSettings(env={**TEST_ENV, "WECOM_APP_SECRET": ""}, dotenv=None)
    cs.save(cast(Settings, live), "admin", {"WECOM_APP_SECRET": TEST_ENV["WECOM_APP_SECRET"]})
    cluster = Cluster(
        tmp_path, webs=2, workers=2, sim_users=12, env={"WECOM_APP_SECRET": "", "ADMIN_PASSWORD": PASSWORD}
    )
    with cluster as c:
        c.sim.cfg.redirect_domain = urlsplit(c.web_urls[0]).netloc
        member = c.member_ids()[0]
        for url in c.web_urls:  # before: the console's first secret works everywhere
            assert qr_login(url, c.web_urls[0], member) == 302

        admin = admin_session(c.web_urls[1])
        token = re.search(r'name="csrf" value="([^"]+)"', admin.get("/admin/wecom").text).group(1)
        c.sim.cfg.app_secret = NEW_SECRET  # WeCom's side: the secret was reset there
        c.sim.expire_tokens("app")
        seq_before = max((x["seq"] for x in c.calls("gettoken")), default=0)
        r = admin.post(
            "/admin/wecom",
            data={"csrf": token, "WECOM_APP_SECRET": NEW_SECRET, "WECOM_ENABLED": "on", "force": "on"},
            follow_redirects=True,
        )
        saved = time.monotonic()
        assert r.status_code == 200 and "企业微信参数已保存" in r.text, r.text[-2000:]

        # every web process: a login through it succeeds within 10 s
        took: dict[str, float] = {}
        pending = set(c.web_urls)
        while pending and time.monotonic() - saved < WITHIN + 5:
            for url in sorted(pending):
                if qr_login(url, c.web_urls[0], member) == 302:
                    took[url] = time.monotonic() - saved
                    pending.discard(url)
            time.sleep(0.3)
        assert not pending, c.logs()

        # every worker: pushes sent through it, seen in its own log, within 10 s
        sent_by: dict[str, float] = {}
        n = 0
        while len(sent_by) < 2 and time.monotonic() - saved < WITHIN + 5:
            for _ in range(4):
                n += 1
                body = notification(id=f"wq-reload-{n}", type="notice", recipients=[member])
                body.pop("task_id")
                assert httpx.post(
                    f"{c.web_urls[n % 2]}/api/v1/notifications",
                    json=body,
                    headers={"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]},
                ).status_code in (200, 202)
            time.sleep(0.5)
            for w in c.workers:
                log = w.log_path.read_text(encoding="utf-8", errors="replace")
                if w.name not in sent_by and re.search(r'"notification pushed".*"status": "sent"', log):
                    sent_by[w.name] = time.monotonic() - saved
        assert set(sent_by) == {"worker0", "worker1"}, c.logs()

        # the emulator's call log: after the save only the new secret fetched tokens (masked: ****Z7)
        after = [x for x in c.calls("gettoken") if x["seq"] > seq_before]
        app_fetches = [
            x for x in after if x["params"].get("corpsecret") != "****" + TEST_ENV["WECOM_CONTACTS_SECRET"][-2:]
        ]
        assert app_fetches and all(x["params"]["corpsecret"] == "****Z7" for x in app_fetches if x["errcode"] == 0)
        sends = [x for x in c.calls("message/send") if x["errcode"] == 0 and x["seq"] > seq_before]
        assert sends and all(x["token"] == "app" for x in sends)
        assert max(took.values()) <= WITHIN and max(sent_by.values()) <= WITHIN + 1, (took, sent_by)
        # every process said it took the change, and no process logged the secret
        for p in c.procs:
            text = p.log_path.read_text(encoding="utf-8", errors="replace")
            assert "settings changed on the console" in text, p.name
            assert NEW_SECRET not in text and TEST_ENV["WECOM_APP_SECRET"] not in text, p.name
