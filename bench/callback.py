"""The callback benchmark: what one WeCom callback costs us, against baselines measured
in the same run.

1. crypto floor   verify + decrypt + encrypt a reply: ours and wechatpy's, µs per callback.
2. in-process     POST /wecom/callback through the ASGI app, called directly (no HTTP):
                  (a) a `help` click answered with an encrypted reply, (b) a change_contact event
                  whose handler stores a row; both with the durable dedupe write. Against
                  wechatpy's bare handler (decrypt + xmltodict + encrypt a text reply, no HTTP).
3. loopback       `wqbot serve` under wrk (1 thread, 64 connections) with pre-generated UNIQUE
                  signed callbacks, against wechatpy reference servers written the usual way:
                  Starlette + uvicorn[standard] (2 workers) and Flask + gunicorn (2 sync workers).

    python -m bench.callback                       # everything (about 3 minutes)
    python -m bench.callback --repeat 3            # loopback rounds; the table shows medians
    python -m bench.callback --only crypto,inproc  # skip the loopback part

Needs the [bench] extras (`pip install -e '.[bench]'`) and wrk (`apt-get install wrk`).
PostgreSQL/Redis rows run when 127.0.0.1:5432 (user postgres) and 127.0.0.1:6379 answer; each run
uses its own database and queue name, dropped at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN_ID = secrets.token_hex(3)
TMP = Path(tempfile.gettempdir()) / f"wqbot-bench-{RUN_ID}"  # made by prepare(), removed at exit
PG_ADMIN = os.environ.get("WQBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("WQBOT_BENCH_REDIS", "redis://127.0.0.1:6379/0")

CORP = "ww1a2b3c4d5e6f7a8b"
# The own-V test triple of tests/data/wecom_vectors.json (the same values the tests sign with); nothing here is secret.
ENV = {
    "WECOM_CORP_ID": CORP,
    "WECOM_AGENT_ID": "1000002",
    "WECOM_APP_SECRET": "bench-app-secret",
    "WECOM_TOKEN": "T0kenForDocTests",
    "WECOM_AES_KEY": "AvluMXaJSmrivhqi8EPrQGiww9Wp/2BN50/kzaCNN/Q",
    "WECOM_CONTACTS_TOKEN": "ContactsT0ken",
    "WECOM_CONTACTS_AES_KEY": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    "SECRET_KEY": "bench-secret-key-0123456789abcdef",
    "WEIQIAN_API_TOKEN": "bench-weiqian-token-0123456789ab",
    "WECOM_API_BASE": "http://127.0.0.1:9",  # nothing here may call out
    "LOG_FORMAT": "text",
}
sys.path.insert(0, str(ROOT))


def prepare() -> None:
    """The environment of the in-process part; before wqbot is imported (its queue is chosen
    from QUEUE_URL at import time)."""
    TMP.mkdir(exist_ok=True)
    os.environ.update(ENV)
    os.environ.update(
        DATABASE_URL=f"sqlite:///{TMP / 'inproc.db'}",
        QUEUE_URL=f"sqlite:///{TMP / 'inproc-queue.db'}",
        WQBOT_QUEUE_NAME=f"wqbot-bench-{RUN_ID}",
    )


# -- requests ----------------------------------------------------------------------------------
def click_plain(i: int, salt: str) -> str:
    """A `help` menu click; FromUserName/CreateTime make each delivery (its plaintext) unique."""
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[u{salt}{i:07d}]]></FromUserName>"
        f"<CreateTime>{1700000000 + i}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[click]]></Event><EventKey><![CDATA[help]]></EventKey><AgentID>1000002</AgentID></xml>"
    )


def change_plain(i: int, salt: str) -> str:
    """change_contact/update_user, the shape of the V2 test vector, one new UserID each."""
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{1700000000 + i}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[update_user]]></ChangeType>"
        f"<UserID><![CDATA[z{salt}{i:07d}]]></UserID><NewUserID><![CDATA[n{salt}{i:07d}]]></NewUserID>"
        "<Name><![CDATA[张三]]></Name><Department><![CDATA[1,2]]></Department><MainDepartment>1</MainDepartment>"
        "<IsLeaderInDept><![CDATA[0,1]]></IsLeaderInDept><Status>1</Status></xml>"
    )


def sign(crypto, plain: str, i: int, salt: str) -> tuple[dict, bytes]:
    """(query, body) of the POST WeCom makes: envelope as WeCom sends it (ToUserName, Encrypt, AgentID)."""
    ts, nonce = str(1700000000 + i), f"{salt}{i}"
    enc, sig = crypto.encrypt_message(plain, ts, nonce)
    body = (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt>"
        "<AgentID><![CDATA[1000002]]></AgentID></xml>"
    )
    return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body.encode()


def make_requests(n: int, kind: str = "click", crypto=None) -> list[tuple[dict, bytes]]:
    from bot.crypto import WeComCrypto

    crypto = crypto or WeComCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
    salt = secrets.token_hex(3)
    plain = click_plain if kind == "click" else change_plain
    return [sign(crypto, plain(i, salt), i, salt) for i in range(n)]


def median_us(fn, items, repeats: int) -> float:
    """Median over `repeats` passes of the µs per item; fn(items) runs one pass."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(items)
        times.append((time.perf_counter() - t0) / len(items) * 1e6)
    return statistics.median(times)


# -- 1. crypto floor ---------------------------------------------------------------------------
def crypto_floor(n: int, repeats: int) -> dict:
    from wechatpy.enterprise.crypto import WeChatCrypto

    from bot import texts
    from bot.callback import replies
    from bot.crypto import WeComCrypto

    ours = WeComCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
    theirs = WeChatCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
    reply = replies.text(texts.HELP).to_xml("u0000001", CORP)
    reqs = []
    for q, body in make_requests(n):
        enc = re.search(rb"<Encrypt><!\[CDATA\[(.*?)\]\]>", body).group(1).decode()
        reqs.append((q["msg_signature"], q["timestamp"], q["nonce"], enc))

    def run_ours(items):
        for sig, ts, nonce, enc in items:
            ours.decrypt_message(sig, ts, nonce, enc)
            ours.encrypt_reply(reply, ts, nonce)

    def run_theirs(items):
        for sig, ts, nonce, enc in items:
            theirs.decrypt_message({"Encrypt": enc}, sig, ts, nonce)  # a dict: no XML parse here
            theirs.encrypt_message(reply, nonce, ts)

    run_ours(reqs[:200]), run_theirs(reqs[:200])  # warm up
    return {"ours": median_us(run_ours, reqs, repeats), "wechatpy": median_us(run_theirs, reqs, repeats)}


# -- 2. in-process -----------------------------------------------------------------------------
def wechatpy_bare(n: int, repeats: int) -> float:
    """wechatpy's bare handler: decrypt (its own xmltodict envelope parse), xmltodict the plaintext,
    render a TextReply, encrypt it. No HTTP, no store."""
    import xmltodict
    from wechatpy.enterprise.crypto import WeChatCrypto
    from wechatpy.replies import TextReply

    from bot.texts import HELP

    crypto = WeChatCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
    reqs = make_requests(n)

    def run(items):
        for q, body in items:
            plain = crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
            msg = xmltodict.parse(plain)["xml"]
            if msg.get("MsgType") == "event" and msg.get("Event") == "click":
                reply = TextReply(source=msg["ToUserName"], target=msg["FromUserName"], content=HELP).render()
                crypto.encrypt_message(reply, q["nonce"], q["timestamp"])

    run(reqs[:200])
    return median_us(run, reqs, repeats)


class ASGIClient:
    """Calls an ASGI app the way uvicorn would, without a socket."""

    def __init__(self, app, path: str = "/wecom/callback"):
        self.app, self.path = app, path

    async def post(self, query_string: bytes, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": query_string,
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"text/xml"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status, chunks = 0, []

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def _event_loop():
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def run_asgi(client: ASGIClient, reqs_per_pass: list[list], concurrency: int) -> list[float]:
    """µs per callback for each pass; every pass gets its own unique requests. concurrency 1 is
    one callback after another (the cost of one); 64 keeps 64 in flight (what a loaded server sees)."""

    async def one_pass(reqs):
        bad = 0
        t0 = time.perf_counter()
        if concurrency == 1:
            for q, body in reqs:
                status, _ = await client.post(q, body)
                bad += status != 200
        else:
            it = iter(reqs)

            async def worker():
                nonlocal bad
                for q, body in it:
                    status, _ = await client.post(q, body)
                    bad += status != 200

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        dt = time.perf_counter() - t0
        if bad:
            raise SystemExit(f"bench: {bad} of {len(reqs)} callbacks were not answered 200")
        return dt / len(reqs) * 1e6

    async def main():
        encoded = [[(urlencode(q).encode(), body) for q, body in reqs] for reqs in reqs_per_pass]
        return [await one_pass(reqs) for reqs in encoded]

    with asyncio.Runner(loop_factory=_event_loop) as runner:
        return runner.run(main())


def bench_store_model():
    import peewee as pw

    from store.models import Model

    class BenchContact(Model):
        """What a change_contact handler typically writes: one member row."""

        userid = pw.CharField(primary_key=True, max_length=64)
        new_userid = pw.CharField(max_length=64)
        name = pw.CharField(max_length=64)
        department = pw.CharField(max_length=200)
        status = pw.IntegerField()

        class Meta:
            table_name = "bench_contact"

    return BenchContact


def change_apps(settings, BenchContact) -> list[tuple[str, object, str]]:
    """(tag, app, label) for the stored change event: always a tiny app built here with
    CallbackEndpoint and a handler that upserts one row (the endpoint's own cost), and the real
    contacts handler through create_app() once bot/handlers/contacts.py routes update_user."""
    import peewee as pw
    from starlette.applications import Starlette
    from starlette.routing import Route

    from bot.app import create_app
    from bot.callback import CallbackEndpoint, CallbackFastPath
    from bot.callback.router import Router
    from bot.crypto import WeComCrypto
    from store import db

    def row_of(msg):
        return {
            "userid": msg.get_str("UserID"),
            "new_userid": msg.get_str("NewUserID"),
            "name": msg.get_str("Name"),
            "department": msg.get_str("Department"),
            "status": int(msg.get_str("Status") or 0),
        }

    peewee_router, sql_router = Router(), Router()

    @peewee_router.event("change_contact", change_type="update_user")
    def upsert_with_peewee(msg, ctx):
        row = row_of(msg)
        BenchContact.insert(row).on_conflict(conflict_target=[BenchContact.userid], update=row).execute()

    sql_cache = {}

    @sql_router.event("change_contact", change_type="update_user")
    def upsert_with_sql(msg, ctx):
        # the same statement, built by peewee once and reused (what bot/callback/deliveries.py does)
        row = row_of(msg)
        if "sql" not in sql_cache:
            q = BenchContact.insert(row).on_conflict(
                conflict_target=[BenchContact.userid], update={f: pw.EXCLUDED[f] for f in row if f != "userid"}
            )
            sql, params = q.sql()
            assert params == list(row.values()), "peewee ordered the columns differently"
            sql_cache["sql"] = sql
        db.execute_sql(sql_cache["sql"], list(row.values()))

    crypto = WeComCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)

    def inline(router):
        endpoint = CallbackEndpoint(crypto, router, settings, "app")
        return CallbackFastPath(Starlette(routes=[Route("/wecom/callback", endpoint, methods=["GET", "POST"])]))

    apps = [
        ("row", inline(peewee_router), "inline app: CallbackEndpoint + a handler that upserts one row with peewee"),
        ("rowsql", inline(sql_router), "inline app: the same upsert as one prepared statement (peewee builds it once)"),
    ]
    apps.append(
        (
            "contacts",
            CallbackFastPath(create_app(settings, init_store=False)),
            "the served app with bot/handlers/contacts.py (V2 shape: a rename, plus a deferred user/get)",
        )
    )
    return apps


def inprocess(n: int, repeats: int, pg_url: str | None) -> dict:
    import settings as settings_mod
    from bot.app import create_app
    from bot.callback import CallbackFastPath
    from store import init_store
    from store.models import Delivery

    settings = settings_mod.load(env=dict(os.environ), dotenv=None)
    settings_mod.override(settings)
    BenchContact = bench_store_model()
    out = {"bare": wechatpy_bare(n, repeats), "labels": {}}
    stores = [("sqlite", f"sqlite:///{TMP / 'inproc.db'}")] + ([("pg", pg_url)] if pg_url else [])
    for store_name, url in stores:
        database = init_store(url)
        database.create_tables([BenchContact], safe=True)
        # what `wqbot serve` serves (bot.server.stack): create_app() behind CallbackFastPath
        apps = [
            (
                "click",
                CallbackFastPath(create_app(settings, init_store=False)),
                "the served app (create_app() behind CallbackFastPath), the `help` click handler",
            )
        ]
        apps += change_apps(settings, BenchContact)
        for conc in (1, 64):
            for tag, app, label in apps:
                out["labels"][tag] = label
                client = ASGIClient(app)
                # fewer on PG one at a time (each waits for its commit's fsync), and through the
                # contacts handler (milliseconds each; see the report)
                k = n if (store_name == "sqlite" or conc > 1) else max(200, n // 5)
                if tag == "contacts":
                    k = max(200, k // 10)
                kind = "click" if tag == "click" else "change"
                before, rows = Delivery.select().count(), BenchContact.select().count()
                run_asgi(client, [make_requests(100, kind)], conc)  # warm up
                walls, cpus = [], []
                for _ in range(repeats):
                    reqs = make_requests(k, kind)
                    cpu = time.process_time()
                    walls += run_asgi(client, [reqs], conc)
                    cpus.append((time.process_time() - cpu) / k * 1e6)
                out[f"{store_name}/{tag}/c{conc}"] = {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}
                stored = Delivery.select().count() - before
                if stored != 100 + k * repeats:
                    raise SystemExit(f"bench: {stored} deliveries stored, expected {100 + k * repeats}")
                if tag.startswith("row") and BenchContact.select().count() - rows != stored:
                    raise SystemExit("bench: the change handler did not store one row per delivery")
        database.close()
    return out


# -- 3. loopback -------------------------------------------------------------------------------
def process_children() -> dict[int, list[int]]:
    """ppid → the pids of its children, for every process now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_requests(path: Path, reqs) -> None:
    with path.open("w") as f:
        for q, body in reqs:
            f.write(f"/wecom/callback?{urlencode(q)}\t{body.decode()}\n")


def pg_available() -> bool:
    try:
        import psycopg2

        psycopg2.connect(PG_ADMIN, connect_timeout=2).close()
        import redis

        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
        return True
    except Exception:
        return False


def pg_create(tag: str) -> str:
    import psycopg2

    name = f"wqbot_bench_{RUN_ID}_{tag}"
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def pg_drop(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    conn.close()


class Server:
    """One server under test, started fresh (new temp dir / database) for every measurement."""

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
        self.proc = None
        self.workdir = None
        self.pg_url = None
        self.queue_name = None

    def start(self, port: int) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-", dir=TMP))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "WQBOT_"))
        }
        env.update(ENV, PYTHONPATH=str(ROOT) + os.environ.get("BENCH_EXTRA_PATH", ""))
        host = ["127.0.0.1", str(port)]
        if self.kind == "flask":
            cmd = [
                str(BIN / "gunicorn"),
                "-w",
                "2",
                "-b",
                ":".join(host),
                "--log-level",
                "warning",
                "bench.ref_flask:app",
            ]
        elif self.kind == "starlette":
            cmd = [
                str(BIN / "uvicorn"),
                "bench.ref_starlette:app",
                "--host",
                host[0],
                "--port",
                host[1],
                "--workers",
                "2",
                "--http",
                "httptools",
                "--loop",
                "uvloop",
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        elif self.kind == "noop":
            cmd = [
                str(BIN / "uvicorn"),
                "bench.ref_noop:app",
                "--host",
                host[0],
                "--port",
                host[1],
                "--http",
                "httptools",
                "--loop",
                "uvloop",
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        elif self.kind == "ours-embedded":
            env.update(
                DATABASE_URL=f"sqlite:///{self.workdir / 'wqbot.db'}",
                QUEUE_URL=f"sqlite:///{self.workdir / 'wqbot-queue.db'}",
            )
            cmd = [str(BIN / "wqbot"), "serve", "--host", host[0], "--port", host[1]]
        elif self.kind == "ours-pg":
            self.pg_url = pg_create(self.workdir.name.replace("-", "_").lower())
            self.queue_name = f"wqbot-bench-{RUN_ID}-{self.workdir.name}"
            env.update(DATABASE_URL=self.pg_url, QUEUE_URL=REDIS_URL, WQBOT_QUEUE_NAME=self.queue_name)
            cmd = [str(BIN / "wqbot"), "serve", "--host", host[0], "--port", host[1], "--workers", "2"]
        else:
            raise ValueError(self.kind)
        self.log = (self.workdir / "server.log").open("w")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.workdir if self.kind.startswith("ours") else ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = port
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        from bot.callback.xml import parse
        from bot.crypto import WeComCrypto
        from bot.texts import HELP

        crypto = WeComCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
        q, body = make_requests(1)[0]
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{self.port}/wecom/callback", params=q, content=body, timeout=5)
                break
            except httpx.TransportError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(
                        f"bench: {self.name} did not start:\n" + (self.workdir / "server.log").read_text()
                    ) from None
                time.sleep(0.1)
        if self.kind == "noop":
            return
        env = parse(r.content)
        reply = parse(crypto.decrypt_message(env["MsgSignature"], env["TimeStamp"], env["Nonce"], env["Encrypt"]))
        if r.status_code != 200 or reply.get("Content") != HELP:
            raise SystemExit(f"bench: {self.name} answered {r.status_code} without the help reply")

    def pids(self) -> list[int]:
        """The server's processes (supervisor, workers), and for PostgreSQL its backends."""
        children = process_children()
        tree, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += children.get(pid, [])
        if self.pg_url:
            import psycopg2

            conn = psycopg2.connect(PG_ADMIN)
            cur = conn.cursor()
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.pg_url.rsplit("/", 1)[1],))
            tree += [r[0] for r in cur.fetchall()]
            conn.close()
        return tree

    @staticmethod
    def cpu_seconds(pids: list[int]) -> float:
        """CPU time (user + system) the processes used so far. Unlike wall-clock figures it
        hardly moves when other work shares the machine."""
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stored(self) -> int | None:
        """Deliveries the server committed (ours only), read after it stopped."""
        if self.kind == "ours-embedded":
            import sqlite3

            with sqlite3.connect(self.workdir / "wqbot.db") as c:
                return c.execute("SELECT count(*) FROM delivery").fetchone()[0]
        if self.kind == "ours-pg":
            import psycopg2

            with psycopg2.connect(self.pg_url) as c:
                cur = c.cursor()
                cur.execute("SELECT count(*) FROM delivery")
                n = cur.fetchone()[0]
            c.close()
            return n
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()

    def cleanup(self) -> None:
        if self.pg_url:
            pg_drop(self.pg_url)
            self.pg_url = None
        if self.queue_name:
            from huey import RedisHuey

            RedisHuey(self.queue_name, url=REDIS_URL).storage.flush_all()
            self.queue_name = None
        shutil.rmtree(self.workdir, ignore_errors=True)


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(out: str) -> dict:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * _UNIT[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "wrapped": int(re.search(r"wrapped=(\d+)", out).group(1)),
    }


def wrk(port: int, requests_file: Path, duration: float, connections: int) -> dict:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(ROOT / "bench/callback_load.lua"),
        f"http://127.0.0.1:{port}",
        "--",
        str(requests_file),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"bench: wrk failed ({run.returncode}): {run.stderr or run.stdout}")
    return parse_wrk(run.stdout)


def loopback(
    duration: float, warmup: float, connections: int, repeat: int, with_pg: bool, max_rate: int, http_floor: bool = True
) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (apt-get install wrk)")
    servers = [
        Server("Flask + gunicorn, 2 sync workers (wechatpy, no store)", "flask"),
        Server("Starlette + uvicorn[standard], 2 workers (wechatpy, no store)", "starlette"),
        Server("wqbot serve, embedded: SQLite + huey SQLite, 1 process", "ours-embedded"),
    ]
    if with_pg:
        servers.append(Server("wqbot serve --workers 2: PostgreSQL + Redis", "ours-pg"))
    if http_floor:
        servers.append(Server("HTTP floor: uvicorn[standard], 1 worker, a no-op ASGI app", "noop"))
    print(f"  generating {int(max_rate * (duration + warmup)):,} unique signed callbacks…", file=sys.stderr)
    warm_file, main_file = TMP / "warmup.tsv", TMP / "requests.tsv"
    write_requests(warm_file, make_requests(int(max_rate * warmup)))
    write_requests(main_file, make_requests(int(max_rate * duration)))
    results: dict[str, list[dict]] = {s.name: [] for s in servers}
    # Rounds interleave the servers, so a noisy neighbour on this shared machine hits all of them.
    for rnd in range(repeat):
        for s in servers:
            port = free_port()
            try:
                s.start(port)
                wrk(port, warm_file, warmup, connections)
                pids = s.pids()
                cpu = Server.cpu_seconds(pids)
                r = wrk(port, main_file, duration, connections)
                r["cpu_us"] = (Server.cpu_seconds(pids) - cpu) / max(r["requests"], 1) * 1e6
                s.stop()
                r["stored"] = s.stored()
                if r["stored"] is not None:
                    # probe + warm-up + measured requests; wrk does not count those in flight at the end
                    r["stored_ok"] = r["stored"] >= r["requests"]
            finally:
                s.stop() if s.proc and s.proc.poll() is None else None
                s.cleanup()
            results[s.name].append(r)
            print(
                f"  round {rnd + 1}: {s.name}: {r['rps']:,.0f}/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms, "
                f"server CPU {r['cpu_us']:.0f} µs/callback"
                + (f", {r['non2xx']} non-2xx" if r["non2xx"] else "")
                + (f", {r['socket_errors']} socket errors" if r["socket_errors"] else "")
                + (" (REQUEST FILE WRAPPED: duplicates were sent)" if r["wrapped"] else "")
                + (f", {r['stored']:,} deliveries stored" if r.get("stored") is not None else ""),
                file=sys.stderr,
            )
    return results


# -- report ------------------------------------------------------------------------------------
def report(crypto: dict | None, inproc: dict | None, loop: dict | None, args) -> str:
    lines = [
        f"wqbot callback benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"python {sys.version.split()[0]}; the machine may be shared, so figures are noisy)",
        "",
    ]
    if crypto:
        lines += [
            "1. crypto floor (verify + decrypt + encrypt a reply), µs per callback, median of "
            f"{args.repeats} passes of {args.n}",
            "",
            "| | µs | vs wechatpy |",
            "|---|---:|---:|",
            f"| wechatpy WeChatCrypto | {crypto['wechatpy']:.1f} | 1.00× |",
            f"| ours (bot.crypto) | {crypto['ours']:.1f} | {crypto['ours'] / crypto['wechatpy']:.2f}× |",
            "",
        ]
    if inproc:
        bare = inproc["bare"]
        floor = crypto["ours"] if crypto else None
        names = {
            "click": "help click → encrypted reply",
            "row": "change_contact → one row (peewee)",
            "rowsql": "change_contact → one row (prepared SQL)",
            "contacts": "change_contact → contacts.py",
        }
        lines += [
            "2. in-process: POST /wecom/callback through the ASGI app (no HTTP), µs per callback, "
            "incl. the durable dedupe write; median of passes",
            "",
        ]
        lines += [f"   {names[tag]}: {label}" for tag, label in inproc["labels"].items()]
        lines += [
            "",
            "| path | store | in flight | µs (wall) | CPU µs (this process) | vs wechatpy bare | vs crypto floor |",
            "|---|---|---:|---:|---:|---:|---:|",
            f"| wechatpy bare handler (decrypt + xmltodict + TextReply + encrypt) | none | 1 | {bare:.1f} | | 1.00× | "
            + (f"{bare / floor:.1f}× |" if floor else "|"),
        ]
        for key, value in inproc.items():
            if "/" not in key:
                continue
            store, tag, conc = key.split("/")
            wall = value["wall"]
            lines.append(
                f"| ours: {names[tag]} | {'SQLite' if store == 'sqlite' else 'PostgreSQL'} | {conc[1:]} | "
                f"{wall:.1f} | {value['cpu']:.1f} | {wall / bare:.2f}× | "
                + (f"{wall / floor:.1f}× |" if floor else "|")
            )
        lines += [
            "",
            "   target: ours ≤ 1.5× wechatpy's bare handler. PostgreSQL, one at a time: each callback "
            "waits for its own commit (a disk flush).",
            "",
        ]
    if loop:
        med = {
            name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cpu_us")}
            for name, runs in loop.items()
        }
        names = list(med)
        flask, star = names[0], names[1]
        lines += [
            f"3. loopback: wrk -t1 -c{args.connections} -d{args.duration:g}s, unique signed help clicks, "
            f"median of {args.repeat} round(s) (each on a fresh store)",
            "",
            "| server | callbacks/s | p50 ms | p99 ms | vs Starlette ref | vs Flask ref | server CPU µs/callback "
            "| runs (callbacks/s) |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in names:
            m = med[name]
            runs = ", ".join(f"{r['rps']:,.0f}" for r in loop[name])
            flags = ""
            if any(r["non2xx"] or r["socket_errors"] for r in loop[name]):
                flags += " (errors!)"
            if any(r["wrapped"] for r in loop[name]) and "no-op" not in name:
                flags += " (request file wrapped!)"
            if any(r.get("stored_ok") is False for r in loop[name]):
                flags += " (fewer deliveries stored than answered!)"
            lines.append(
                f"| {name}{flags} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
                f"{m['rps'] / med[star]['rps']:.2f}× | {m['rps'] / med[flask]['rps']:.2f}× | {m['cpu_us']:.0f} | {runs} |"
            )
        lines += [
            "",
            f"   targets: ≥ 1.0× Starlette, ≥ 2.5× Flask, p99 ≤ 15 ms at {args.connections} connections",
            "   server CPU: user+system time of the server's processes (and, for PostgreSQL, of its backends "
            "serving that database) per answered callback; wrk's own CPU is not counted",
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="crypto,inproc,loopback", help="comma list of: crypto, inproc, loopback")
    p.add_argument("-n", type=int, default=3000, help="callbacks per in-process pass")
    p.add_argument("--repeats", type=int, default=5, help="in-process passes (median)")
    p.add_argument("--repeat", type=int, default=1, help="loopback rounds (median)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk warm-up per server")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--max-rate", type=int, default=22000, help="unique requests generated per second of wrk run")
    p.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL + Redis rows")
    p.add_argument("--no-http-floor", action="store_true", help="skip the no-op uvicorn row")
    p.add_argument("--json", help="also write the raw figures here")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    prepare()
    with_pg = not args.no_pg and pg_available()
    if not args.no_pg and not with_pg:
        print("bench: PostgreSQL/Redis not reachable; skipping their rows", file=sys.stderr)
    pg_url = None
    try:
        crypto = inproc = loop = None
        if "crypto" in only:
            print("1. crypto floor…", file=sys.stderr)
            crypto = crypto_floor(args.n, args.repeats)
        if "inproc" in only:
            print("2. in-process…", file=sys.stderr)
            pg_url = pg_create("inproc") if with_pg else None
            inproc = inprocess(args.n, args.repeats, pg_url)
        if "loopback" in only:
            print("3. loopback…", file=sys.stderr)
            loop = loopback(
                args.duration,
                args.warmup,
                args.connections,
                args.repeat,
                with_pg,
                args.max_rate,
                not args.no_http_floor,
            )
        print(report(crypto, inproc, loop, args))
        if args.json:
            Path(args.json).write_text(json.dumps({"crypto": crypto, "inproc": inproc, "loopback": loop}, indent=1))
    finally:
        if pg_url:
            try:
                from store import db

                if db.obj is not None and not db.obj.is_closed():
                    db.obj.close()
            except Exception:
                pass
            pg_drop(pg_url)
        shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
