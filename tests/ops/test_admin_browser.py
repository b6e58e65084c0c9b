"""The admin console in headless Chromium (Debian's `chromium`, driven over the DevTools protocol):
log in with ADMIN_PASSWORD, press 立即同步, and check what the status page shows, with a
screenshot. Real processes on 127.0.0.1: the WeCom emulator (`wqbot sim`), `wqbot serve` (plus
`wqbot worker` on the PostgreSQL + Redis backend). Skipped, with the reason, only where Chromium
is not installed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import Browser, chromium_path
from tests.conftest import BACKEND, TEST_ENV
from tests.support import wait_until_serving

PASSWORD = "first-setup-password-42"
SIM_USERS = 30
TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, cwd: Path, ready_url: str) -> subprocess.Popen:
    log = open(cwd / f"{args[0]}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )
    wait_until_serving(ready_url, proc, cwd / f"{args[0]}.log", timeout=TIMEOUT)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (.ci/install-extras installs Debian's)")
def test_log_in_sync_now_and_see_the_result(tmp_path):
    sim_port, web_port = free_port(), free_port()
    sim_url, web_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{web_port}"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "PROMETHEUS_", "ADMIN_"))
    }
    env = {
        **base,
        **TEST_ENV,
        "WECOM_API_BASE": sim_url,
        "WECOM_OAUTH_BASE": sim_url,
        "WECOM_SSO_BASE": sim_url,
        "PUBLIC_URL": web_url,
        "ADMIN_PASSWORD": PASSWORD,
        "WQBOT_QUEUE_NAME": f"wqbot-admin-browser-{web_port}",
    }
    if BACKEND == "sqlite":
        env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'wqbot.db'}", QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}")
    # Only the button may sync here: with the default 10 minutes the periodic sync fires on the
    # next :x0 minute and races the "nothing synced yet" check. One year never comes up in a test.
    env["SYNC_INTERVAL_MINUTES"] = str(366 * 24 * 60)
    procs = []
    page = None
    try:
        procs.append(
            start(
                ["sim", "--port", str(sim_port), "--users", str(SIM_USERS), "--departments", "6", "--seed", "7"],
                env,
                tmp_path,
                f"{sim_url}/cgi-bin/gettoken",
            )
        )
        procs.append(start(["serve", "--port", str(web_port)], env, tmp_path, f"{web_url}/healthz"))
        if BACKEND == "pg":  # the scale-out shape: the web process does not consume the Redis queue
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", "worker", "--workers", "1"],
                    env=env,
                    cwd=tmp_path,
                    stdout=open(tmp_path / "worker.log", "w"),
                    stderr=subprocess.STDOUT,
                )
            )
        assert httpx.get(f"{web_url}/readyz").status_code == 503  # nothing synced yet

        page = Browser(chromium_path())
        page.goto(f"{web_url}/admin")
        page.wait_for(
            "location.pathname === '/admin/login' && document.querySelector('#password-login')", "the login page"
        )
        assert page.text("h1") == "管理员登录"
        page.evaluate(f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)}")
        page.click("#password-login button")
        page.wait_for("location.pathname === '/admin' && document.querySelector('#sync-now')", "the status page")
        assert page.text("#sync-status") == "尚未同步过。"
        page.click("#sync-now button")
        page.wait_for("document.querySelector('#notice')", "the action's notice")
        assert "已加入同步队列" in page.text("#notice")

        deadline = time.monotonic() + TIMEOUT
        while page.text("#sync-status") != "成功" and time.monotonic() < deadline:
            time.sleep(0.3)
            page.goto(f"{web_url}/admin")
            page.wait_for("document.querySelector('#sync')", "the status page")
        shot = page.screenshot(tmp_path / "admin-status.png")
        keep = os.environ.get("WQBOT_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / "admin-status.png").write_bytes(shot)
        assert page.text("#sync-status") == "成功", (tmp_path / "serve.log").read_text()[-2000:]
        counts = page.text("#sync-counts")
        header, values = [line.split("\t") for line in counts.strip().splitlines()[:2]]
        shown = dict(zip(header, values, strict=True))
        assert shown["成员总数"] == str(SIM_USERS) and int(shown["新增成员"]) == SIM_USERS
        assert int(shown["部门总数"]) >= 6
        assert page.text("#queue-outbox") is not None
        settings_text = page.text("#settings")
        assert "WECOM_APP_SECRET" in settings_text and TEST_ENV["WECOM_APP_SECRET"] not in settings_text
        assert PASSWORD not in page.evaluate("document.documentElement.outerHTML")
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
        width, height = int.from_bytes(shot[16:20], "big"), int.from_bytes(shot[20:24], "big")
        assert width >= 1000 and height >= 600

        page.goto(f"{web_url}/admin/directory")
        page.wait_for("document.querySelector('#directory-summary')", "the directory page")
        assert re.search(rf"{SIM_USERS} 名成员", page.text("#directory-summary"))
        assert page.evaluate("document.querySelectorAll('#tree ul.members li').length") >= 1
        assert httpx.get(f"{web_url}/readyz").status_code == 200
    finally:
        if page is not None:
            page.close()
        for p in reversed(procs):
            stop(p)
