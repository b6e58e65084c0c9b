"""A live wqbot for the tests that talk to it as 微签 would: `wqbot sim` and `wqbot serve` as real
processes on loopback ports (plus `wqbot worker` on the scale-out backend), with a store and a
queue of their own.

    with LiveWqbot(tmp_path, env={"WEIQIAN_WEBHOOK_URL": …}) as live:
        live.sync()                                   # `wqbot sync --full` against the emulator
        httpx.get(live.url + "/api/v1/org/users", headers=live.auth)
        httpx.post(live.sim_url + "/sim/send", json={…})  # a member acts in WeCom

The backend follows WQBOT_TEST_BACKEND: SQLite + huey SQLite files in the test's folder, or a
PostgreSQL database made for this instance + Redis under a queue name of its own. Nothing here
imports tests.conftest at module level (it is imported by the test process only).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STRIP = ("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "PROMETHEUS_", "ADMIN_", "SYNC_", "WQBOT_", "H5_")
STRIP_EXACT = ("PUBLIC_URL", "PC_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveWqbot:
    def __init__(self, workdir: Path, *, env: dict | None = None, users: int = 12, departments: int = 3):
        from tests.conftest import BACKEND, PG_ADMIN, REDIS_URL, RUN_ID, TEST_ENV

        self.workdir = Path(workdir)
        self.backend = BACKEND
        self.port, self.sim_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.api_token = TEST_ENV["WEIQIAN_API_TOKEN"]
        self.auth = {"Authorization": f"Bearer {self.api_token}"}
        self.users, self.departments = users, departments
        self._pg_admin, self._pg_db = PG_ADMIN, None
        if BACKEND == "pg":
            self._pg_db = f"wqbot_t_{RUN_ID}_live_{secrets.token_hex(3)}"
            database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self._pg_db
            queue_url = REDIS_URL
        else:
            database_url = f"sqlite:///{self.workdir / 'wqbot.db'}"
            queue_url = f"sqlite:///{self.workdir / 'queue.db'}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(STRIP) and k not in STRIP_EXACT}
        creds = {k: v for k, v in TEST_ENV.items() if k.startswith("WECOM_") or k in ("SECRET_KEY",)}
        self.env = {
            **base,
            **creds,
            "WEIQIAN_API_TOKEN": self.api_token,
            "WECOM_API_BASE": self.sim_url,
            "WECOM_OAUTH_BASE": self.sim_url,
            "WECOM_SSO_BASE": self.sim_url,
            "PUBLIC_URL": self.url,
            # Never fetched: a login's last redirect goes there, and the test reads the ticket off it.
            "H5_URL": "https://sign.example.com/h5/#/pages/login/login_pro",
            "PC_URL": "https://sign.example.com/pc/",
            "DATABASE_URL": database_url,
            "QUEUE_URL": queue_url,
            "WQBOT_QUEUE_NAME": f"wqbot-live-{RUN_ID}-{self.port}",
            "WQBOT_LOG_FORMAT": "text",
            **(env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    # -- processes --------------------------------------------------------------------------
    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str, n: int = 3000) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-n:]
        except OSError:
            return ""

    def _wait(self, name: str, url: str, timeout: float = 60.0) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not answer {url}; log tail:\n{self.log(name)}")
            time.sleep(0.1)

    def _wait_log(self, name: str, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name, 100_000):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} never logged {text!r}; log tail:\n{self.log(name)}")
            time.sleep(0.1)

    def start(self) -> LiveWqbot:
        if self._pg_db:
            self._pg("CREATE DATABASE")
        sim_args = ["--port", str(self.sim_port), "--users", str(self.users), "--departments", str(self.departments)]
        self._spawn("sim", "sim", *sim_args, "--callback-url", f"{self.url}/wecom/callback")
        self._wait("sim", self.sim_url + "/sim")
        self._spawn("serve", "serve", "--port", str(self.port))
        self._wait("serve", self.url + "/healthz")
        if self.backend == "pg":  # the scale-out setup: serve answers, a worker consumes the Redis queue
            self._spawn("worker", "worker", "--workers", "2")
            self._wait_log("worker", "consuming")
        return self

    def sync(self) -> None:
        """One full directory sync now, as `wqbot sync --full` does it."""
        r = subprocess.run(
            [sys.executable, "-m", "bot.cli", "sync", "--full"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, f"wqbot sync --full exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if self._pg_db:
            self._pg("DROP DATABASE IF EXISTS", " WITH (FORCE)")

    def _pg(self, verb: str, tail: str = "") -> None:
        import psycopg2

        conn = psycopg2.connect(self._pg_admin)
        conn.autocommit = True
        conn.cursor().execute(f'{verb} "{self._pg_db}"{tail}')
        conn.close()

    def __enter__(self) -> LiveWqbot:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what 微签 and the members do --------------------------------------------------------
    def login_ticket(self, userid: str) -> str:
        """An H5 OAuth login through the emulator's authorize page, as a member's WeCom browser
        makes it; returns the ticket wqbot put on the 微签 H5 URL."""
        from urllib.parse import parse_qs, urlsplit

        with httpx.Client(timeout=15, follow_redirects=False) as browser:
            r = browser.get(self.url + "/oauth/h5", params={"next": "/pages/index/index"})
            assert r.status_code == 302, r.text
            authorize = r.headers["location"].split("#", 1)[0]
            assert authorize.startswith(self.sim_url + "/connect/oauth2/authorize?"), authorize
            picked = browser.get(authorize + "&sim_userid=" + userid)
            assert picked.status_code == 302, picked.text[:500]
            landed = browser.get(picked.headers["location"])
            assert landed.status_code == 302, landed.text[:500]
        fragment = urlsplit(landed.headers["location"]).fragment
        return parse_qs(fragment.split("?", 1)[1])["ticket"][0]
