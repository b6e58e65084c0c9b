"""`wqbot demo` end to end, as a person runs it: a subprocess that starts the emulator, `wqbot serve`
and the 微签 stand-in, tours the product, exits 0 and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parents[2]
STEPS = [
    "console set-up (企业微信参数, 开启企业微信)",
    "URL verification",
    "full directory sync",
    "live change_contact",
    "待我处理 click",
    "approval card to three people",
    "同意: every card updates, signed webhook arrives",
    "H5 OAuth login → validated ticket",
    "reminder before the deadline (clock jumps)",
    "expiry: every card 已过期, task.expired webhook",
    "工作台 tile: 待审批 1 → 0 after 同意",
]

# The demo always runs on its own embedded SQLite store and queue, whatever the test backend is.
pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="the demo is backend-independent; run once, on sqlite")


def child_env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_demo(*extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )


def urls(text: str) -> dict:
    m = re.search(r"emulator (http://\S+) .* wqbot (http://\S+) · 微签 stand-in (http://\S+)", text)
    return {"sim": m.group(1), "wqbot": m.group(2), "weiqian": m.group(3)}


def test_demo_tours_every_step_and_cleans_up():
    r = run_demo()
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for i, title in enumerate(STEPS, 1):
        line = next((x for x in out.splitlines() if x.startswith(f"[{i}/{len(STEPS)}] {title} … ")), None)
        assert line is not None, f"step {i} missing:\n{out}"
        assert re.match(rf"\[{i}/{len(STEPS)}\] .+ … (ok in \d+\.\d\d s: |skipped: )", line), line
    assert "all steps passed" in out
    folder = re.search(r"SQLite in (\S+);", out).group(1)
    assert not Path(folder).exists(), "the temporary folder is removed"
    for url in urls(out).values():
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/", timeout=1)


@pytest.mark.slow
def test_demo_keep_leaves_both_running_until_interrupted():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "demo", "--keep"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    lines = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip().startswith("API token"):
                break
        out = "".join(lines)
        assert "Both are still running" in out, out
        u = urls(out)
        assert httpx.get(u["wqbot"] + "/healthz", timeout=5).status_code == 200
        assert httpx.get(u["sim"] + "/sim", timeout=5).json()["calls"] > 0
        page = httpx.get(u["wqbot"] + "/oauth/h5", timeout=5)
        assert page.status_code == 302 and page.headers["location"].startswith(u["sim"])
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    for url in u.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/", timeout=1)


def test_demo_keep_prints_an_admin_login_and_sigterm_cleans_up():
    """`kill <pid>` stops the demo as Ctrl-C does: `wqbot serve` stopped, the folder removed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "demo", "--keep"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    lines = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip().startswith("admin console"):
                break
        out = "".join(lines)
        m = re.search(r"admin console  (http://\S+)/admin\b.*?password: (\S+)", out)
        assert m, out
        with httpx.Client(base_url=m.group(1), timeout=5) as c:
            page = c.get("/admin/login")
            assert page.status_code == 200 and 'name="password"' in page.text
            nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)
            data = {"password": m.group(2), **({"login_nonce": nonce.group(1)} if nonce else {})}
            r = c.post("/admin/login", data=data, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].endswith("/admin"), r.text[:300]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 128 + signal.SIGTERM
    folder = re.search(r"SQLite in (\S+);", out).group(1)
    assert not Path(folder).exists(), "SIGTERM removed the temporary folder"
    for url in urls(out).values():
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/", timeout=1)
