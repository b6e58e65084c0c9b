"""deploy/nginx/wqbot.conf (the site docs/deploy.md installs), as written, in front of `wqbot serve --proxy-headers` on
loopback with a self-signed certificate made here: what the browser and WeCom get is https.
Skipped, with the reason, only where nginx or openssl is not installed."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, TEST_ENV
from tests.support import wait_until_serving

SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "wqbot.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
OPENSSL = shutil.which("openssl")
PUBLIC = "https://wq.example.com"

pytestmark = pytest.mark.skipif(
    NGINX is None or OPENSSL is None,
    reason="nginx or openssl is not installed (.ci/install-extras installs nginx-light)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_config() -> str:
    return SITE.read_text(encoding="utf-8")


def localise(conf: str, tmp: Path, tls: int, plain: int, app: int) -> str:
    """Only what must differ on a test machine: ports, certificate and web-root paths."""
    swaps = [
        ("listen 443 ssl;", f"listen 127.0.0.1:{tls} ssl;"),
        ("listen 80;", f"listen 127.0.0.1:{plain};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app};"),
        ("/etc/letsencrypt/live/wq.example.com/fullchain.pem", str(tmp / "cert.pem")),
        ("/etc/letsencrypt/live/wq.example.com/privkey.pem", str(tmp / "key.pem")),
        ("/var/www/wqbot-verify", str(tmp / "verify")),
    ]
    for old, new in swaps:
        assert old in conf, f"the sample no longer contains {old!r}: update this test with the doc"
        conf = conf.replace(old, new)
    return conf


def test_sample_nginx_config_serves_wqbot_over_https(tmp_path):
    tls, plain, app = free_port(), free_port(), free_port()
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=wq.example.com",
            "-addext",
            "subjectAltName=DNS:wq.example.com,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "verify").mkdir()
    (tmp_path / "verify" / "WW_verify_Ab12Cd34.txt").write_text("Ab12Cd34")
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n"
        + "".join(f"  {k}_temp_path {tmp_path}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + localise(sample_config(), tmp_path, tls, plain, app)
        + "}\n"
    )
    check = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr

    # WeCom is the emulator: /oauth/h5 asks agent/get for the 可信域名 (it derives it from PUBLIC_URL)
    sim_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_",))}
    env.update(TEST_ENV)
    env.update(
        PUBLIC_URL=PUBLIC,
        ADMIN_PASSWORD="x" * 20,
        WQBOT_QUEUE_NAME=f"wqbot-nginx-{app}",
        WECOM_API_BASE=f"http://127.0.0.1:{sim_port}",
    )
    if BACKEND == "sqlite":
        env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'wqbot.db'}", QUEUE_URL=f"sqlite:///{tmp_path / 'q.db'}")
    sim = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sim", "--port", str(sim_port), "--users", "5"],
        env=env,
        cwd=tmp_path,
        stdout=open(tmp_path / "sim.log", "w"),
        stderr=subprocess.STDOUT,
    )
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "serve",
            "--port",
            str(app),
            "--no-worker",
            "--proxy-headers",
            "--forwarded-allow-ips",
            "127.0.0.1",
        ],
        env=env,
        cwd=tmp_path,
        stdout=open(tmp_path / "serve.log", "w"),
        stderr=subprocess.STDOUT,
    )
    proxy = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    https = f"https://127.0.0.1:{tls}"
    try:
        wait_until_serving(f"http://127.0.0.1:{sim_port}/cgi-bin/gettoken", sim, tmp_path / "sim.log")
        wait_until_serving(f"http://127.0.0.1:{app}/healthz", web, tmp_path / "serve.log")
        trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        wait_until_serving(f"{https}/healthz", proxy, tmp_path / "error.log", verify=trust)
        with httpx.Client(verify=trust, timeout=5) as c:
            assert c.get(f"{https}/healthz").json() == {"status": "ok"}

            # the OAuth redirect WeCom's in-app browser follows: back to the https origin
            r = c.get(f"{https}/oauth/h5", params={"next": "/pages/task/task_detail?id=T-1"})
            assert r.status_code == 302, r.text
            location = r.headers["location"]
            assert location.startswith(TEST_ENV.get("WECOM_OAUTH_BASE", "https://open.weixin.qq.com"))
            assert "redirect_uri=https%3A%2F%2Fwq.example.com%2Foauth%2Fh5%2Fcallback" in location

            # what wqbot derives from the request: nginx's X-Forwarded-Proto reached it (--proxy-headers)
            r = c.get(f"{https}/admin/login")
            assert r.status_code == 200 and "管理员登录" in r.text
            assert "secure" in r.headers["set-cookie"].lower()
            r = c.get(f"{https}/admin", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/admin/login"

            # WeCom's URL verification through the proxy (what the console's 保存 sends), as the doctor does it
            import settings as settings_mod
            from bot.ops.doctor import Doctor

            s = settings_mod.load(env={**TEST_ENV, "PUBLIC_URL": https}, dotenv=None)
            doctor = Doctor(s, http=c)
            doctor.check_callback()
            assert all(ch.ok for ch in doctor.checks), [ch.line() for ch in doctor.checks]

            # the 可信域名 ownership file, and /metrics kept to this host
            assert c.get(f"{https}/WW_verify_Ab12Cd34.txt").text == "Ab12Cd34"
            assert c.get(f"{https}/metrics").status_code == 200
        r = httpx.get(f"http://127.0.0.1:{plain}/admin?x=1", follow_redirects=False)
        assert r.status_code == 301 and r.headers["location"] == "https://127.0.0.1/admin?x=1"
        assert httpx.get(f"http://127.0.0.1:{plain}/WW_verify_Ab12Cd34.txt").text == "Ab12Cd34"
    finally:
        for p in (proxy, web, sim):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
