"""The callback benchmark: what one WeCom callback costs us, against baselines measured in the
same run, for several loads (bench/loads.py).

1. crypto floor   verify + decrypt + encrypt a reply: ours and wechatpy's, µs per callback.
2. in-process     POST /wecom/callback through what `wqbot serve` serves, called directly (no
                  HTTP), with the durable dedupe write, for each load; against wechatpy's bare
                  handler (decrypt + xmltodict + encrypt a text reply, no HTTP).
3. loopback       `wqbot serve` under wrk (1 thread, 64 connections) with pre-generated UNIQUE
                  signed callbacks of each load, against the wechatpy reference written the usual
                  way (Starlette + uvicorn[standard], 2 workers), the HTTP floor (a no-op ASGI app),
                  and optionally Flask + gunicorn.
4. profile        where the CPU of one callback goes, per stage (bench/profile.py).

Loads (--load, a comma list): help (unique `help` clicks), unknown (clicks with keys no handler
knows), mixed (clicks, update_user, text, card taps on open tasks; a seeded store, bench/seed.py).

    python -m bench.callback                          # crypto, in-process, loopback for help (~3 min)
    python -m bench.callback --load help,unknown,mixed --repeat 3
    python -m bench.callback --only profile --load help,mixed
    python -m bench.callback --root ../other-checkout # the same benchmark on another tree's code

Needs the [bench] extras (`pip install -e '.[bench]'`) and wrk (`apt-get install wrk`).
PostgreSQL/Redis rows run when 127.0.0.1:5432 (user postgres) and 127.0.0.1:6379 answer; each run
uses its own database and queue name, dropped at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
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

from bench import target  # first: the project's modules come from the tree under test
from bench.loads import LOADS, MIX, MIX_KINDS, Load, Seeded, taps_needed

ROOT = target.BENCH_ROOT  # this benchmark's tree (bench/, the reference servers)
CODE_ROOT = target.CODE_ROOT  # the tree whose code is measured (--root; this one by default)
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
    ts, nonce = str(int(time.time())), f"{salt}{i}"  # wqbot refuses deliveries more than 1 h off its clock
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


def signed(plains: list[str], crypto=None) -> list[tuple[dict, bytes]]:
    """(query, body) of each plaintext, signed and encrypted as WeCom sends it."""
    from bot.crypto import WeComCrypto

    crypto = crypto or WeComCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
    salt = secrets.token_hex(3)
    return [sign(crypto, plain, i, salt) for i, plain in enumerate(plains)]


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
    from bot.crypto import WeComCrypto

    ours = WeComCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
    theirs = WeChatCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
    reply = target.replies().text(texts.HELP).to_xml("u0000001", CORP)
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
    """(tag, app, label) for the stored change event (--load change, in-process only): a tiny app
    built here with CallbackEndpoint and a handler that upserts one row (the endpoint's own cost),
    as peewee writes it and as one prepared statement; and the served app's contacts handler."""
    import peewee as pw
    from starlette.applications import Starlette
    from starlette.routing import Route

    from bot.crypto import WeComCrypto
    from store import db

    CallbackEndpoint, CallbackFastPath, Router = target.callback_parts()

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
        # the same statement, built by peewee once and reused (what the delivery-key store does)
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

    return [
        ("row", inline(peewee_router), "inline app: CallbackEndpoint + a handler that upserts one row with peewee"),
        ("rowsql", inline(sql_router), "inline app: the same upsert as one prepared statement (peewee builds it once)"),
        (
            "contacts",
            target.served_app(),
            "the served app with bot/handlers/contacts.py (V2 shape: a rename, plus a deferred user/get)",
        ),
    ]


class InProcess:
    """The in-process part: what `wqbot serve` serves (the tree's own factory), called through
    ASGIClient on one store after another. Logging is set up as `wqbot serve` sets it up, into a
    file (what a server writes to stderr)."""

    def __init__(self, seeds: dict | None = None):
        import settings as settings_mod

        self.settings = settings_mod.load(env=dict(os.environ), dotenv=None)
        settings_mod.override(self.settings)
        self.log_file = (TMP / "inproc-log.txt").open("w")
        target.logs().setup(fmt=self.settings.log_format, secrets=self.settings.secret_values, stream=self.log_file)
        self.seeds = seeds or {}
        self.app = None

    def open_store(self, store_name: str, url: str, load: str) -> tuple[str, Seeded | None]:
        """init_store on a fresh store for the load (the mixed load: a copy of the seeded one)."""
        from store import init_store

        seeded = None
        if load == "mixed":
            seed, seeded = self.seeds[store_name]
            dest = TMP / f"inproc-{store_name}-{secrets.token_hex(2)}"
            dest.mkdir()
            url = seed.url_for(dest, f"inproc_{dest.name[-4:]}")
        init_store(url)
        self.url = url
        if self.app is None:
            self.app = target.served_app()
        return url, seeded

    def measure(self, client: "ASGIClient", load: Load, k: int, repeats: int, conc: int) -> dict:
        from store.models import Delivery

        before = Delivery.select().count()
        run_asgi(client, [signed(load.take(100))], conc)  # warm up
        # PostgreSQL: the CPU of its backends serving this database counts too (as in the loopback)
        backends = pg_backend_pids(self.url) if self.url.startswith("postgres") else []
        walls, cpus = [], []
        for _ in range(repeats):
            reqs = signed(load.take(k))
            cpu, pg = time.process_time(), Server.cpu_seconds(backends)
            walls += run_asgi(client, [reqs], conc)
            cpus.append((time.process_time() - cpu + Server.cpu_seconds(backends) - pg) / k * 1e6)
        stored = Delivery.select().count() - before
        if stored != 100 + k * repeats:
            raise SystemExit(f"bench: {stored} deliveries stored, expected {100 + k * repeats}")
        return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "cpus": cpus}


def inprocess(part: "InProcess", n: int, repeats: int, pg_url: str | None, loads: list[str]) -> dict:
    from store import init_store

    out = {"bare": wechatpy_bare(n, repeats), "labels": {}}
    stores = [("sqlite", f"sqlite:///{TMP / 'inproc.db'}")] + ([("pg", pg_url)] if pg_url else [])
    for store_name, url in stores:
        for load_name in [x for x in loads if x in LOADS and (x != "mixed" or store_name in part.seeds)]:
            _, seeded = part.open_store(store_name, url, load_name)
            load = Load(load_name, seeded)
            out["labels"][load_name] = f"the served app ({target.layout()} layout), {load_name} load"
            for conc in (1, 64):
                # fewer on PG one at a time (each waits for its commit's fsync), and of the mixed load
                # (milliseconds each, and every tap needs an open task)
                k = n if (store_name == "sqlite" or conc > 1) else max(200, n // 5)
                k = mixed_k(n) if load_name == "mixed" else k
                out[f"{store_name}/{load_name}/c{conc}"] = part.measure(ASGIClient(part.app), load, k, repeats, conc)
            if load.wrapped_taps:
                out.setdefault("notes", []).append(
                    f"{store_name}/{load_name}: {load.wrapped_taps} taps on decided tasks"
                )
        if "change" in loads:
            database = init_store(url)
            part.url = url
            BenchContact = bench_store_model()
            database.create_tables([BenchContact], safe=True)
            for tag, app, label in change_apps(part.settings, BenchContact):
                out["labels"][tag] = label
                for conc in (1, 64):
                    k = n if (store_name == "sqlite" or conc > 1) else max(200, n // 5)
                    if tag == "contacts":
                        k = max(200, k // 10)
                    rows = BenchContact.select().count()
                    r = part.measure(ASGIClient(app), _ChangeLoad(), k, repeats, conc)
                    out[f"{store_name}/{tag}/c{conc}"] = r
                    if tag.startswith("row") and BenchContact.select().count() - rows != 100 + k * repeats:
                        raise SystemExit("bench: the change handler did not store one row per delivery")
    return out


def mixed_k(n: int) -> int:
    """Callbacks per pass of the mixed load in-process (a fifth of -n)."""
    return max(200, n // 5)


class _ChangeLoad:
    """change_contact/update_user renames, one new UserID each (the `change` in-process rows)."""

    def __init__(self):
        self.salt, self.i = secrets.token_hex(3), 0

    def take(self, n: int) -> list[str]:
        self.i += n
        return [change_plain(i, self.salt) for i in range(self.i - n, self.i)]


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


def pg_create(tag: str, template: str | None = None) -> str:
    import psycopg2

    name = f"wqbot_bench_{RUN_ID}_{tag}"
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def pg_backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends serving the database of `url`."""
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN)
    try:
        cur = conn.cursor()
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (url.rsplit("/", 1)[1],))
        return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


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

    def start(self, port: int, seed=None, extra_env: dict | None = None, sampled: bool = False) -> None:
        """Start fresh: a new temp dir, database and queue name; `seed` (bench/seed.py) gives ours a
        copy of the seeded store instead of an empty one; `sampled` runs ours under the CPU-time
        sampler (bench/sampled_serve.py)."""
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.kind}-", dir=TMP))
        self.samples_file = self.workdir / "samples.json"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "WQBOT_"))
        }
        ours = self.kind.startswith("ours")
        # ours: the code under test; the references: this tree's bench/ (and its bot/texts.py)
        env.update(ENV, PYTHONPATH=str(CODE_ROOT if ours else ROOT) + os.environ.get("BENCH_EXTRA_PATH", ""))
        env.update(extra_env or {})
        host = ["127.0.0.1", str(port)]
        wqbot = [sys.executable, "-m", "bot.cli", "serve", "--host", host[0], "--port", host[1]]
        if sampled and ours:
            wqbot[2] = "bench.sampled_serve"
            env.update(PYTHONPATH=f"{CODE_ROOT}{os.pathsep}{ROOT}", WQBOT_BENCH_SAMPLES=str(self.samples_file))
        if seed is not None and ours:
            wqbot.append("--no-worker")  # deferred work waits in the queue: its CPU is a worker's
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
        elif self.kind in ("ours-embedded", "ours-embedded2"):
            db_url = seed.url_for(self.workdir, "") if seed is not None else f"sqlite:///{self.workdir / 'wqbot.db'}"
            env.update(DATABASE_URL=db_url, QUEUE_URL=f"sqlite:///{self.workdir / 'wqbot-queue.db'}")
            # one web process, or two sharing the database and the queue (one of them consumes it)
            cmd = wqbot + ["--workers", "2" if self.kind == "ours-embedded2" else "1"]
        elif self.kind == "ours-pg":
            tag = self.workdir.name.replace("-", "_").lower()
            self.pg_url = seed.url_for(self.workdir, tag) if seed is not None else pg_create(tag)
            self.queue_name = f"wqbot-bench-{RUN_ID}-{self.workdir.name}"
            env.update(DATABASE_URL=self.pg_url, QUEUE_URL=REDIS_URL, WQBOT_QUEUE_NAME=self.queue_name)
            cmd = wqbot + ["--workers", "2"]
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
        import xmltodict
        from wechatpy.enterprise.crypto import WeChatCrypto

        from bot.texts import HELP

        crypto = WeChatCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
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
        reply = None
        if r.status_code == 200 and r.content:
            env = xmltodict.parse(r.content)["xml"]
            plain = crypto.decrypt_message(r.content, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
            reply = xmltodict.parse(plain)["xml"].get("Content")
        if reply != HELP:
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
            tree += pg_backend_pids(self.pg_url)
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
        if self.kind in ("ours-embedded", "ours-embedded2"):
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


REF, EMBEDDED, EMBEDDED2, SCALED, FLOOR, FLASK = (
    "Starlette + uvicorn[standard], 2 workers (wechatpy, no store)",
    "wqbot embedded (SQLite, 1 process)",
    "wqbot embedded (SQLite, 2 web processes)",
    "wqbot scaled out (PostgreSQL + Redis, 2 web workers)",
    "HTTP floor (no-op ASGI app, uvicorn[standard], 1 worker)",
    "Flask + gunicorn, 2 sync workers (wechatpy, no store)",
)
SERVER_KINDS = {
    "starlette": (REF, "starlette"),
    "embedded": (EMBEDDED, "ours-embedded"),
    "embedded2": (EMBEDDED2, "ours-embedded2"),
    "pg": (SCALED, "ours-pg"),
    "floor": (FLOOR, "noop"),
    "flask": (FLASK, "flask"),
}


def run_server(
    s: Server,
    warm_file: Path,
    main_file: Path,
    duration: float,
    warmup: float,
    connections: int,
    seed=None,
    extra_env: dict | None = None,
    sampled: bool = False,
) -> dict:
    """One measurement: start fresh, warm up, then wrk with the server's CPU time read around it
    (`sampled`: and the server's CPU-time samples per stage, taken over the same window)."""
    port = free_port()
    try:
        s.start(port, seed=seed, extra_env=extra_env, sampled=sampled)
        wrk(port, warm_file, warmup, connections)
        pids = s.pids()
        cpu = Server.cpu_seconds(pids)
        if sampled:
            os.kill(s.proc.pid, signal.SIGUSR1)
        r = wrk(port, main_file, duration, connections)
        r["cpu_us"] = (Server.cpu_seconds(pids) - cpu) / max(r["requests"], 1) * 1e6
        if sampled:
            os.kill(s.proc.pid, signal.SIGUSR2)
            deadline = time.time() + 15
            while not s.samples_file.exists() and time.time() < deadline:
                time.sleep(0.1)
            r["stages"] = json.loads(s.samples_file.read_text())
        s.stop()
        r["stored"] = s.stored()
        if r["stored"] is not None:
            # probe + warm-up + measured requests; wrk does not count those in flight at the end
            r["stored_ok"] = r["stored"] >= r["requests"]
    finally:
        s.stop() if s.proc and s.proc.poll() is None else None
        s.cleanup()
    return r


def loopback(args, loads: list[str], kinds: list[str], seeds: dict) -> dict:
    """{"floor": [runs], load: {server name: [runs]}}; rounds interleave every server and load."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (apt-get install wrk)")
    from bench.seed import WEBHOOK

    files = {}
    for load_name in loads:
        rate = args.mixed_rate if load_name == "mixed" else args.max_rate
        seeded = next(iter(seeds.values()))[1] if load_name == "mixed" else None  # the same plan on each
        load = Load(load_name, seeded)
        warm, main = TMP / f"warmup-{load_name}.tsv", TMP / f"requests-{load_name}.tsv"
        print(
            f"  {load_name}: signing {int(rate * (args.duration + args.warmup)):,} unique callbacks…", file=sys.stderr
        )
        write_requests(warm, signed(load.take(int(rate * args.warmup))))
        write_requests(main, signed(load.take(int(rate * args.duration))))
        files[load_name] = (warm, main)
    out: dict = {"floor": [], **{load_name: {} for load_name in loads}}
    for rnd in range(args.repeat):
        plan = [("floor", "floor")] if "floor" in kinds else []
        plan += [(load_name, k) for load_name in loads for k in kinds if k != "floor"]
        for load_name, kind in plan:
            name, server_kind = SERVER_KINDS[kind]
            if load_name == "floor":
                warm, main = files[loads[0]]
            else:
                warm, main = files[load_name]
            backend = "pg" if kind == "pg" else "sqlite"
            seed = seeds[backend][0] if load_name == "mixed" and kind in ("embedded", "embedded2", "pg") else None
            extra = WEBHOOK if load_name == "mixed" else None
            r = run_server(
                Server(name, server_kind), warm, main, args.duration, args.warmup, args.connections, seed, extra
            )
            (out["floor"] if load_name == "floor" else out[load_name].setdefault(name, [])).append(r)
            print(
                f"  round {rnd + 1}, {load_name}: {name}: {r['rps']:,.0f}/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms, "
                f"server CPU {r['cpu_us']:.0f} µs/callback"
                + (f", {r['non2xx']} non-2xx" if r["non2xx"] else "")
                + (f", {r['socket_errors']} socket errors" if r["socket_errors"] else "")
                + (" (REQUEST FILE WRAPPED: duplicates were sent)" if r["wrapped"] else "")
                + (f", {r['stored']:,} deliveries stored" if r.get("stored") is not None else ""),
                file=sys.stderr,
            )
    return out


def make_seeds(args, backends: list[str], taps: int) -> dict:
    """backend → (SeedStore, Seeded) for the mixed load, made through the API (bench/seed.py)."""
    from bench.seed import WEBHOOK, Emulator, SeedStore

    creds = {**ENV, "WECOM_CONTACTS_SECRET": "bench-contacts-secret"}
    base_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "WQBOT_", "PUBLIC_URL"))
        },
        **creds,
        **WEBHOOK,
        "PYTHONPATH": str(CODE_ROOT),
        "H5_URL": "http://127.0.0.1:9/h5/",
        "SYNC_INTERVAL_MINUTES": "1440",
    }
    workdir = TMP / "seed"
    workdir.mkdir(exist_ok=True)
    port = free_port()  # each backend's seeding server in turn (the emulator's callback URL)
    emulator = Emulator(
        base_env, args.members, max(2, args.members // 20), workdir, f"http://127.0.0.1:{port}/wecom/callback"
    )
    seeds = {}
    try:
        members = emulator.members()
        for backend in backends:
            pg = (pg_create, pg_drop, REDIS_URL, RUN_ID) if backend == "pg" else None
            store = SeedStore(backend, workdir / backend, base_env, pg)
            SEEDS.append(store)
            seeds[backend] = (store, store.build(emulator, members, taps, port, RUN_ID))
    finally:
        emulator.stop()
    return seeds


SEEDS: list = []  # dropped at exit


# -- 4. profile ---------------------------------------------------------------------------------
PROFILE_PASSES = 40


def profile_part(part: InProcess, loads: list[str], n: int, repeats: int, pg_url: str | None, samples: int) -> dict:
    """Per load (SQLite, 64 in flight): CPU µs per callback without the profiler, then the share
    of each stage under the CPU-time sampler (bench/profile.py). The mixed load also by kind: each kind
    alone on a fresh copy of the seeded store, SQLite and PostgreSQL (with its backends' CPU)."""
    from bench.profile import profile

    out: dict = {}
    for load_name in [x for x in loads if x in LOADS]:
        k = mixed_k(n) if load_name == "mixed" else n
        _, seeded = part.open_store("sqlite", f"sqlite:///{TMP / f'profile-{load_name}.db'}", load_name)
        load = Load(load_name, seeded)
        client = ASGIClient(part.app)
        measured = part.measure(client, load, k, repeats, 64)
        # passes of k until the sampler has its samples (at most PROFILE_PASSES: every tap needs a task)
        runs = (functools.partial(run_asgi, client, [signed(load.take(k))], 64) for _ in range(PROFILE_PASSES))
        shares, sampler = profile(runs, CODE_ROOT, samples)
        top = {stage: sampler.top(stage) for stage in shares if stage != "_samples"}
        out[load_name] = {"cpu": measured["cpu"], "shares": shares, "samples": shares.pop("_samples"), "top": top}
        print(f"  profile {load_name}: {measured['cpu']:.0f} µs/callback in-process", file=sys.stderr)
        if load_name != "mixed":
            continue
        out["mixed"]["kinds"] = kinds = {}
        for store_name in ["sqlite"] + (["pg"] if pg_url and "pg" in part.seeds else []):
            for kind in MIX_KINDS:
                _, seeded = part.open_store(store_name, "", "mixed")
                r = part.measure(ASGIClient(part.app), Load("mixed", seeded, only=kind), k // 2, repeats, 64)
                kinds.setdefault(kind, {})[store_name] = r["cpu"]
                print(f"    {store_name} {kind}: {r['cpu']:.0f} µs/callback", file=sys.stderr)
    return out


def loopback_profile(args, loads: list[str], seeds: dict) -> dict:
    """Per load: the embedded server under wrk, sampled from inside (bench/sampled_serve.py)."""
    out = {}
    for load_name in [x for x in loads if x in LOADS]:
        rate = args.mixed_rate if load_name == "mixed" else args.max_rate
        load = Load(load_name, seeds["sqlite"][1] if load_name == "mixed" else None)
        warm, main = TMP / f"sampled-warm-{load_name}.tsv", TMP / f"sampled-{load_name}.tsv"
        write_requests(warm, signed(load.take(int(rate * args.warmup))))
        write_requests(main, signed(load.take(int(rate * args.profile_duration))))
        seed = seeds["sqlite"][0] if load_name == "mixed" else None
        extra = None
        if load_name == "mixed":
            from bench.seed import WEBHOOK

            extra = WEBHOOK
        r = run_server(
            Server(EMBEDDED, "ours-embedded"),
            warm,
            main,
            args.profile_duration,
            args.warmup,
            args.connections,
            seed,
            extra,
            True,
        )
        from bench.profile import shares_of

        shares = shares_of(r["stages"]["counts"])
        out[load_name] = {
            "cpu": r["cpu_us"],
            "rps": r["rps"],
            "samples": shares.pop("_samples"),
            "shares": shares,
            "top": r["stages"]["top"],
        }
        print(
            f"  sampled embedded server, {load_name}: {r['rps']:,.0f}/s, {r['cpu_us']:.0f} µs/callback",
            file=sys.stderr,
        )
    return out


def floor_only(args) -> list[dict]:
    """The HTTP floor alone (when the loopback part did not run): a short no-op uvicorn run."""
    warm, main = TMP / "floor-warm.tsv", TMP / "floor-main.tsv"
    write_requests(warm, make_requests(2000))
    write_requests(main, make_requests(20000))
    return [run_server(Server(FLOOR, "noop"), warm, main, 5, 1, args.connections) for _ in range(args.repeat)]


# -- report ------------------------------------------------------------------------------------
def _spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return fmt.format(values[0]) if len(values) == 1 else "–".join(fmt.format(v) for v in (min(values), max(values)))


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(crypto, inproc, loop, prof, floor_runs, args, loads, served=None) -> str:
    lines = [
        f"wqbot callback benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"python {sys.version.split()[0]}; the machine may be shared, so figures are noisy)",
        f"code under test: {CODE_ROOT} at {target.commit()} ({target.layout()} layout); "
        f"benchmark: bench/ of {ROOT} at {target.commit_of(ROOT)}",
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
        lines += [
            "2. in-process: POST /wecom/callback through what `wqbot serve` serves (no HTTP), µs per callback, "
            f"incl. the durable dedupe write; median of {args.repeats} passes (CPU: this process, all threads)",
            "",
            "| load | store | in flight | µs (wall) | CPU µs | CPU µs, passes | wall vs wechatpy bare |",
            "|---|---|---:|---:|---:|---|---:|",
            f"| wechatpy bare handler (decrypt + xmltodict + TextReply + encrypt) | none | 1 | {bare:.1f} | | | 1.00× |",
        ]
        for key, value in inproc.items():
            if key.count("/") != 2:
                continue
            store, tag, conc = key.split("/")
            lines.append(
                f"| {tag} | {'SQLite' if store == 'sqlite' else 'PostgreSQL'} | {conc[1:]} | {value['wall']:.1f} | "
                f"{value['cpu']:.1f} | {_spread(value['cpus'])} | {value['wall'] / bare:.2f}× |"
            )
        lines += [f"   {tag}: {label}" for tag, label in inproc["labels"].items()]
        lines += [f"   note: {x}" for x in inproc.get("notes", [])]
        lines.append("")
    floor = _med(floor_runs, "cpu_us") if floor_runs else None
    if loop:
        for load_name in [x for x in loads if x in loop]:
            runs_by = loop[load_name]
            if not runs_by:
                continue
            ref = _med(runs_by[REF], "rps") if REF in runs_by else None
            lines += [
                f"3. loopback, {load_name} load: wrk -t1 -c{args.connections} -d{args.duration:g}s, unique signed "
                f"callbacks, median of {args.repeat} round(s) (each server fresh)",
                "",
                "| server | callbacks/s | p50 ms | p99 ms | vs Starlette ref | server CPU µs/callback "
                "| runs: callbacks/s | runs: CPU µs |",
                "|---|---:|---:|---:|---:|---:|---|---|",
            ]
            rows = list(runs_by.items()) + ([(FLOOR, floor_runs)] if floor_runs else [])
            for name, runs in rows:
                flags = ""
                if any(r["non2xx"] or r["socket_errors"] for r in runs):
                    flags += " (errors!)"
                if any(r["wrapped"] for r in runs) and name not in (FLOOR, REF, FLASK):
                    flags += " (request file wrapped!)"
                if any(r.get("stored_ok") is False for r in runs):
                    flags += " (fewer deliveries stored than answered!)"
                rps = _med(runs, "rps")
                vs = "—" if name == FLOOR or not ref else f"{rps / ref:.2f}×"
                lines.append(
                    f"| {name}{flags} | {rps:,.0f} | {_med(runs, 'p50'):.2f} | {_med(runs, 'p99'):.2f} | {vs} | "
                    f"{_med(runs, 'cpu_us'):.0f} | {_spread([r['rps'] for r in runs])} | "
                    f"{_spread([r['cpu_us'] for r in runs])} |"
                )
            lines += [""]
        if "help" in loop and "unknown" in loop:
            lines += [
                "   unknown key vs help (the same servers, the same round): server CPU µs per callback",
                "",
                "| server | help | unknown | unknown / help | callbacks/s unknown / help |",
                "|---|---:|---:|---:|---:|",
            ]
            for name in loop["help"]:
                if name in loop["unknown"]:
                    h, u = loop["help"][name], loop["unknown"][name]
                    lines.append(
                        f"| {name} | {_med(h, 'cpu_us'):.0f} | {_med(u, 'cpu_us'):.0f} | "
                        f"{_med(u, 'cpu_us') / _med(h, 'cpu_us'):.2f}× | {_med(u, 'rps') / _med(h, 'rps'):.2f}× |"
                    )
            lines.append("")
        lines += [
            "   server CPU: user+system time of the server's processes (and, for PostgreSQL, of its backends "
            "serving that database) per answered callback; wrk's own CPU is not counted. The mixed load runs "
            "ours with --no-worker: deferred work waits in the queue.",
            "",
        ]
    if prof:
        from bench.profile import STAGES

        names = list(prof)
        lines += [
            "4. where the CPU of one callback goes (SQLite, 64 in flight; each stage's share of the CPU-time "
            "samples applied to the CPU µs measured without the sampler; HTTP from the no-op floor)",
            "",
            "| stage | " + " | ".join(f"{x}: µs | share" for x in names) + " |",
            "|---|" + "---:|---:|" * len(names),
        ]
        if floor is not None:
            lines.append("| HTTP (server side, no-op floor) | " + " | ".join(f"{floor:.0f} | " for _ in names) + " |")
        for stage in STAGES:
            cells = [f"{prof[x]['shares'][stage] * prof[x]['cpu']:.1f} | {prof[x]['shares'][stage]:.0%}" for x in names]
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
        lines.append("| in-process total | " + " | ".join(f"{prof[x]['cpu']:.0f} | 100%" for x in names) + " |")
        if floor is not None:
            lines.append(
                "| HTTP floor + in-process | " + " | ".join(f"{prof[x]['cpu'] + floor:.0f} | " for x in names) + " |"
            )
        if loop:
            cells = []
            for x in names:
                runs = loop.get(x, {}).get(EMBEDDED)
                cells.append(f"{_med(runs, 'cpu_us'):.0f} | " if runs else "— | ")
            lines.append("| loopback, embedded (measured) | " + " | ".join(cells) + " |")
        lines += ["", "   samples: " + ", ".join(f"{x} {prof[x]['samples']:,}" for x in names), ""]
        lines += ["   the functions most sampled in the biggest stages (the frame running, not its callers):", ""]
        for x in names:
            big = sorted(STAGES, key=lambda st: -prof[x]["shares"][st])[:4]
            for stage in big:
                funcs = ", ".join(f"{f} {c}" for f, c in prof[x]["top"].get(stage, []))
                lines.append(f"   - {x}, {stage}: {funcs}")
        lines.append("")
        if served:
            snames = list(served)
            lines += [
                "   the embedded server itself under wrk (`wqbot serve`, one process, sampled inside by "
                "bench/sampled_serve.py; each stage's share applied to that run's server CPU µs per callback)",
                "",
                "| stage | " + " | ".join(f"{x}: µs | share" for x in snames) + " |",
                "|---|" + "---:|---:|" * len(snames),
            ]
            for stage in STAGES:
                cells = [
                    f"{served[x]['shares'][stage] * served[x]['cpu']:.1f} | {served[x]['shares'][stage]:.0%}"
                    for x in snames
                ]
                lines.append(f"| {stage} | " + " | ".join(cells) + " |")
            lines.append(
                "| server CPU per callback | " + " | ".join(f"{served[x]['cpu']:.0f} | 100%" for x in snames) + " |"
            )
            lines.append(
                "| callbacks/s (sampled run) | " + " | ".join(f"{served[x]['rps']:,.0f} | " for x in snames) + " |"
            )
            lines += ["", "   samples: " + ", ".join(f"{x} {served[x]['samples']:,}" for x in snames), ""]
            for x in snames:
                for stage in sorted(STAGES, key=lambda st: -served[x]["shares"][st])[:4]:
                    funcs = ", ".join(f"{f} {c}" for f, c in served[x]["top"].get(stage, []))
                    lines.append(f"   - {x}, {stage}: {funcs}")
            lines.append("")
        kinds = prof.get("mixed", {}).get("kinds")
        if kinds:
            stores = list(next(iter(kinds.values())))
            weight = {k: sum(f"{a}:{b or 'unknown'}" == k or a == k for a, b in MIX) / len(MIX) for k in kinds}
            total = {st: sum(weight[k] * v[st] for k, v in kinds.items()) for st in stores}
            label = {"sqlite": "SQLite", "pg": "PostgreSQL (+ its backends)"}
            lines += [
                "   the mixed load by kind: each kind alone, in-process, 64 in flight, CPU µs per callback "
                "(and its part of the mix's CPU)",
                "",
                "| kind | share of the mix | " + " | ".join(f"{label[st]}: µs | part" for st in stores) + " |",
                "|---|---:|" + "---:|---:|" * len(stores),
            ]
            for k, v in kinds.items():
                cells = [f"{v[st]:.0f} | {weight[k] * v[st] / total[st]:.0%}" for st in stores]
                lines.append(f"| {k} | {weight[k]:.0%} | " + " | ".join(cells) + " |")
            lines += ["| weighted sum | 100% | " + " | ".join(f"{total[st]:.0f} | " for st in stores) + " |", ""]
    return "\n".join(lines)


def reexec_for(root: Path) -> None:
    """Run this benchmark again with `root`'s code (and its venv's interpreter, when it has one)."""
    env = {**os.environ, "WQBOT_BENCH_ROOT": str(root), "PYTHONPATH": str(ROOT)}
    py = root / ".venv/bin/python"
    exe = str(py) if py.exists() else sys.executable
    os.chdir(ROOT)
    os.execve(exe, [exe, "-m", "bench.callback", *sys.argv[1:]], env)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="crypto,inproc,loopback", help="comma list of: crypto, inproc, loopback, profile")
    p.add_argument("--load", default="help", help=f"comma list of: {', '.join(LOADS)} (and change: in-process only)")
    p.add_argument("--root", help="measure the code of this checkout (default: this one); runs with its .venv")
    p.add_argument(
        "--servers",
        default="starlette,embedded,pg,floor",
        help="comma list of: starlette, embedded, embedded2 (2 web processes), pg, floor, flask",
    )
    p.add_argument("-n", type=int, default=3000, help="callbacks per in-process pass")
    p.add_argument("--repeats", type=int, default=5, help="in-process passes (median)")
    p.add_argument("--repeat", type=int, default=1, help="loopback rounds (median)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk warm-up per server")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--max-rate", type=int, default=22000, help="unique requests generated per second of wrk run")
    p.add_argument(
        "--mixed-rate", type=int, default=1500, help="the same for the mixed load (each tap needs an open task)"
    )
    p.add_argument("--members", type=int, default=200, help="members of the mixed load's directory")
    p.add_argument("--samples", type=int, default=3000, help="CPU-time samples per load for the profile")
    p.add_argument("--profile-duration", type=float, default=20.0, help="seconds of wrk on the sampled server")
    p.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL + Redis rows")
    p.add_argument("--json", help="also write the raw figures here")
    args = p.parse_args(argv)
    if args.root and Path(args.root).resolve() != CODE_ROOT:
        reexec_for(Path(args.root).resolve())
    only, loads = set(args.only.split(",")), args.load.split(",")
    kinds = [k for k in args.servers.split(",") if k]
    unknown = [x for x in loads if x not in (*LOADS, "change")] + [k for k in kinds if k not in SERVER_KINDS]
    if unknown:
        raise SystemExit(f"bench: unknown load or server: {', '.join(unknown)}")
    prepare()
    with_pg = not args.no_pg and pg_available()
    if not args.no_pg and not with_pg:
        print("bench: PostgreSQL/Redis not reachable; skipping their rows", file=sys.stderr)
    if not with_pg:
        kinds = [k for k in kinds if k != "pg"]
    pg_url = None
    try:
        crypto = inproc = loop = prof = served = None
        floor_runs: list[dict] = []
        seeds: dict = {}
        if "mixed" in loads and only & {"inproc", "loopback", "profile"}:
            print("seeding the mixed load's store through the API…", file=sys.stderr)
            backends = ["sqlite"] + (["pg"] if with_pg and ("pg" in kinds or only & {"inproc", "profile"}) else [])
            per_run = args.mixed_rate * (max(args.duration, args.profile_duration) + args.warmup)
            k = mixed_k(args.n)
            # every copy of the seeded store is tapped from its first task on: the most taps one copy takes
            taps = max(
                taps_needed(int(per_run)),
                taps_needed((100 + k * args.repeats) * 2),  # in-process, one at a time and 64 in flight
                taps_needed(100 + k * args.repeats + PROFILE_PASSES * k),  # the profile
                100 + k // 2 * args.repeats + 2,  # the profile's taps alone
            )
            seeds = make_seeds(args, backends, taps)
        if "crypto" in only:
            print("1. crypto floor…", file=sys.stderr)
            crypto = crypto_floor(args.n, args.repeats)
        part = InProcess(seeds) if only & {"inproc", "profile"} else None
        if "inproc" in only:
            print("2. in-process…", file=sys.stderr)
            pg_url = pg_create("inproc") if with_pg else None
            inproc = inprocess(part, args.n, args.repeats, pg_url, loads)
        if "loopback" in only:
            print("3. loopback…", file=sys.stderr)
            loop = loopback(args, [x for x in loads if x in LOADS], kinds, seeds)
            floor_runs = loop.pop("floor")
        if "profile" in only:
            print("4. profile…", file=sys.stderr)
            pg_url = pg_url or (pg_create("inproc") if with_pg else None)
            prof = profile_part(part, loads, args.n, args.repeats, pg_url, args.samples)
            if not floor_runs:
                floor_runs = floor_only(args)
            if shutil.which("wrk"):
                served = loopback_profile(args, loads, seeds)
        print(report(crypto, inproc, loop, prof, floor_runs, args, loads, served))
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "commit": target.commit(),
                        "crypto": crypto,
                        "inproc": inproc,
                        "loopback": loop,
                        "floor": floor_runs,
                        "profile": prof,
                        "served_profile": served,
                    },
                    indent=1,
                )
            )
    finally:
        if pg_url or SEEDS:
            try:
                from store import db

                if db.obj is not None and not db.obj.is_closed():
                    db.obj.close()
            except Exception:
                pass
        if pg_url:
            pg_drop(pg_url)
        for seed in SEEDS:
            seed.cleanup()
        if os.environ.get("WQBOT_BENCH_KEEP"):
            print(f"bench: kept {TMP}", file=sys.stderr)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from bench import callback  # one copy of this module (bench/soak.py imports it by that name)

    sys.exit(callback.main())
