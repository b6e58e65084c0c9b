"""The store the mixed load runs on (bench/loads.py): members and open tasks, made the way
production makes them, once per run and backend; every server under test starts from a copy.

1. `wqbot sim` serves a small directory (`--members`, default 200, in 10 departments);
2. `wqbot sync --full` copies it into a new store;
3. `wqbot serve` (SQLite: with its in-process worker; PostgreSQL: `--no-worker` plus a
   `wqbot worker`) takes one approve notification per task through POST /api/v1/notifications,
   two recipients each, due in a week, and pushes its card to the emulator (message/send);
4. once every notification is `sent`, the processes stop. A copy for a server is a file copy
   (SQLite, after a WAL checkpoint) or `CREATE DATABASE … TEMPLATE` (PostgreSQL).

Taps in the load name a card (its id is `bot.notify.cards.card_id(notification, task, 0)`) and its
first recipient, so every tap lands on a real open task, once.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench.loads import Seeded

PY = sys.executable
API_TOKEN = "bench-weiqian-token-0123456789ab"  # WEIQIAN_API_TOKEN of bench/callback.py's ENV
# 微签's webhook: set, so a decision also writes its webhook row (nothing is listening; the
# servers under test run no worker, so nothing is delivered during a measurement)
WEBHOOK = {"WEIQIAN_WEBHOOK_URL": "http://127.0.0.1:9/weiqian/webhook", "WEIQIAN_WEBHOOK_SECRET": "bench-hook-s3cret"}


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "WQBOT_", "PUBLIC_URL"))
    }


def _spawn(argv: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "bot.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


class Emulator:
    """`wqbot sim` with the benchmark's credentials (bench/callback.py's ENV)."""

    def __init__(self, env: dict, members: int, departments: int, workdir: Path, callback_url: str):
        self.log = workdir / "sim.log"
        self.proc = subprocess.Popen(
            [PY, "-m", "bot.cli", "--log-format", "text", "sim", "--port", "0", "--users", str(members)]
            + ["--departments", str(departments), "--seed", "21", "--callback-url", callback_url],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
            start_new_session=True,
        )
        self.url = None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.search(r"WECOM_API_BASE=(\S+)", line)
            if m:
                self.url = m.group(1)
            if "WECOM_CONTACTS_AES_KEY" in line:
                break
        if not self.url:
            self.stop()
            raise SystemExit(f"bench: the emulator did not start; see {self.log}")

    def members(self) -> list[tuple[str, str]]:
        """Active members as (userid, their departments "1,2")."""
        users = httpx.get(f"{self.url}/sim/users", params={"limit": 10000}, timeout=60).json()["users"]
        return [
            (u["userid"], ",".join(str(d) for d in u.get("department") or [1])) for u in users if u.get("status") == 1
        ]

    def stop(self) -> None:
        _stop(self.proc)


class SeedStore:
    """One backend's seeded store. `url_for(name)` makes a fresh copy and returns its DATABASE_URL."""

    def __init__(self, backend: str, workdir: Path, env: dict, pg: tuple | None = None):
        self.backend, self.workdir, self.env = backend, workdir, env
        self.pg = pg  # (pg_create, pg_drop, redis url, run id) for PostgreSQL
        self.copies: list[str] = []
        workdir.mkdir(parents=True, exist_ok=True)
        if backend == "sqlite":
            self.url = f"sqlite:///{workdir / 'seed.db'}"
        else:
            self.url = pg[0]("seed")

    def build(self, emulator: Emulator, members: list[tuple[str, str]], tasks: int, port: int, run: str) -> Seeded:
        """Seed through the API; `run` names the notifications and tasks (the same on every backend,
        so one request file serves all)."""
        from bot.notify.cards import card_id
        from store.notifications import Notification

        t0 = time.time()
        queue = (
            {"QUEUE_URL": f"sqlite:///{self.workdir / 'seed-queue.db'}"}
            if self.backend == "sqlite"
            else {"QUEUE_URL": self.pg[2], "WQBOT_QUEUE_NAME": f"wqbot-bench-{self.pg[3]}-seed"}
        )
        env = {
            **self.env,
            **queue,
            "DATABASE_URL": self.url,
            "WECOM_API_BASE": emulator.url,
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        sync = subprocess.run(
            [PY, "-m", "bot.cli", "sync", "--full"], cwd=self.workdir, env=env, capture_output=True, text=True
        )
        if sync.returncode:
            raise SystemExit(f"bench: seeding, `wqbot sync --full` failed:\n{sync.stdout[-2000:]}{sync.stderr[-2000:]}")
        procs = []
        try:
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
            if self.backend == "sqlite":
                procs.append(_spawn(serve, env, self.workdir, self.workdir / "seed-serve.log"))
            else:
                procs.append(_spawn(serve + ["--no-worker"], env, self.workdir, self.workdir / "seed-serve.log"))
                procs.append(_spawn(["worker", "--workers", "4"], env, self.workdir, self.workdir / "seed-worker.log"))
            base = f"http://127.0.0.1:{port}"
            deadline = time.time() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or procs[0].poll() is not None:
                    raise SystemExit(f"bench: seeding, wqbot serve did not start; see {self.workdir}")
                time.sleep(0.2)
            due = (datetime.now(timezone.utc) + timedelta(days=7)).replace(microsecond=0).isoformat()
            plan = []
            for i in range(tasks):
                first, second = members[i % len(members)][0], members[(i * 31 + 7) % len(members)][0]
                nid, task = f"bench-{run}-{i}", f"BT-{run}-{i}"
                body = {
                    "id": nid,
                    "type": "approve",
                    "task_id": task,
                    "title": f"采购合同-{i:05d}",
                    "description": "张三 发起了审批，请处理",
                    "initiator": members[(i + 3) % len(members)][0],
                    "recipients": [first, second] if second != first else [first],
                    "url": f"/pages/task/task_detail?id={task}",
                    "deadline": due,
                }
                plan.append((body, card_id(nid, task, 0), first))
            asyncio.run(_post_all(base, [b for b, _, _ in plan]))
            table = Notification._meta.table_name
            deadline = time.time() + max(120, tasks / 20)
            while True:
                counts = dict(self._query(f'SELECT status, count(*) FROM "{table}" GROUP BY status'))
                if counts.get("sent", 0) >= tasks:
                    break
                if set(counts) - {"sent", "queued", "sending"}:
                    raise SystemExit(f"bench: seeding, notifications not sent: {counts}; see {self.workdir}")
                if time.time() > deadline:
                    raise SystemExit(f"bench: seeding, pushes did not finish: {counts}; see {self.workdir}")
                time.sleep(0.5)
        finally:
            for p in procs:
                _stop(p)
        if self.backend == "sqlite":
            with sqlite3.connect(self.workdir / "seed.db") as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(
            f"  seeded {self.backend}: {len(members)} members, {tasks:,} open tasks in {time.time() - t0:.0f} s",
            file=sys.stderr,
        )
        return Seeded(members=members, cards=[(card, tapper) for _, card, tapper in plan])

    def _query(self, sql: str) -> list[tuple]:
        if self.backend == "sqlite":
            with sqlite3.connect(self.workdir / "seed.db") as c:
                return c.execute(sql).fetchall()
        import psycopg2

        conn = psycopg2.connect(self.url)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            conn.close()

    def url_for(self, dest: Path, tag: str) -> str:
        """A fresh copy of the seeded store for one server (or the in-process part)."""
        if self.backend == "sqlite":
            shutil.copyfile(self.workdir / "seed.db", dest / "wqbot.db")
            return f"sqlite:///{dest / 'wqbot.db'}"
        url = self.pg[0](tag, template=self.url.rsplit("/", 1)[1])
        self.copies.append(url)
        return url

    def cleanup(self) -> None:
        if self.backend == "pg":
            for url in [*self.copies, self.url]:
                self.pg[1](url)


async def _post_all(base: str, bodies: list[dict], concurrency: int = 8) -> None:
    it = iter(bodies)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:

        async def worker() -> None:
            for body in it:
                r = await client.post("/api/v1/notifications", json=body)
                if r.status_code != 202:
                    raise SystemExit(f"bench: seeding, POST /api/v1/notifications answered {r.status_code}: {r.text}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
