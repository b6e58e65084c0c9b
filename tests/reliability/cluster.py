"""Real wqbot processes for the reliability tests, and the traffic and chaos they are put under.

    with Cluster(tmp_path, webs=1, workers=0) as c:   # EMBEDDED: one `wqbot serve`, worker inside
    with Cluster(tmp_path, webs=2, workers=2) as c:   # SCALED OUT: 2 × serve --no-worker + 2 × worker

The WeCom emulator runs in this process (so a test reads its call log, messages and cards
directly), and so does a webhook receiver standing in for 微签 (tests.notify.support.Receiver,
which records every X-Wqbot-Delivery). The wqbot processes run against the store and queue this
pytest run already uses (tests/conftest.py: its SQLite files, or its PostgreSQL database and Redis
queue name), so the test process can read the store and enqueue into the same queue.

Each process is `python -m tests.reliability.cluster ARGS`, which is `wqbot ARGS` (bot.cli.main)
plus one thing: with WQBOT_RELIABILITY_FAST_SWEEPS=1 the sweepers' age thresholds and leases are
seconds instead of minutes (see `FAST_SWEEPS`), so a short test can watch the recovery path — the
same code — finish within its time budget. The long version (WQBOT_RELIABILITY_SCALE=long) keeps
the product's real values and waits for the real once-a-minute sweeps.

Importing this module does not import tests.conftest (the child processes import it too, and
conftest creates a database on import): everything that needs the test environment is imported
inside the functions that run in the test process.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import webhook_signed_at

SCALE = os.environ.get("WQBOT_RELIABILITY_SCALE", "short")
LONG = SCALE == "long"
FAST_SWEEPS_ENV = "WQBOT_RELIABILITY_FAST_SWEEPS"

# module attribute -> value in seconds, for the child processes of a short run. The product's
# values: outbox rows re-enqueued after 120 s, a push lease of 120 s, a stuck push re-pushed
# after 300 s, a webhook lease of 30 s and a sweep grace of 60 s.
FAST_SWEEPS = {
    ("bot.queue._outbox", "STALE_AFTER"): 10.0,
    ("bot.notify.push", "LEASE"): 8.0,
    ("bot.notify.updates", "CLAIM_TTL"): 8.0,
    # a reminder or digest WeCom did not take (a token the clock jump expired) is tried again
    # after its lease: 2 and 5 minutes in the product
    ("bot.notify.reminders", "LEASE"): 8.0,
    ("bot.notify.digest", "LEASE"): 8.0,
    ("bot.notify.sweep", "STUCK_PUSH_AFTER"): 8.0,
    ("bot.notify.webhook", "LEASE"): 15.0,  # still longer than the webhook's 10 s timeout
    ("bot.notify.webhook", "SWEEP_GRACE"): 3.0,
}

STRIP = ("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "PROMETHEUS_", "ADMIN_", "SYNC_", "WQBOT_QUEUE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one process ------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    args: list[str]
    cwd: Path
    env: dict
    ready_url: str | None = None  # None: a worker (no HTTP); ready once it says so in its log
    popen: subprocess.Popen | None = None
    starts: int = 0
    kills: list[float] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        log = open(self.log_path, "a")
        log.write(f"\n==== start {self.starts + 1} at {time.time():.3f}\n")
        log.flush()
        offset = self.log_path.stat().st_size
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.cluster", *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready(timeout, offset)

    def wait_ready(self, timeout: float = 30.0, offset: int = 0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if self.ready_url:
                try:
                    if httpx.get(self.ready_url, timeout=2).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            else:
                with open(self.log_path, encoding="utf-8", errors="replace") as f:
                    f.seek(offset)
                    if "worker consuming" in f.read():
                        return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not come up; log tail:\n{self.tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> float:
        """SIGKILL: no cleanup, no graceful shutdown, open transactions and in-flight tasks die."""
        at = time.time()
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
            self.kills.append(at)
        return at

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-n:]
        except OSError:
            return ""


# -- the cluster --------------------------------------------------------------------------------------
class Cluster:
    """The emulator, the webhook receiver and `webs` web + `workers` worker processes.

    webs=1, workers=0 is the embedded setup (the serve process runs the consumer; `web_processes`
    uvicorn processes serve, 1 unless said); otherwise the web processes run with --no-worker and
    the workers consume the queue."""

    def __init__(
        self,
        workdir: Path,
        *,
        webs: int = 1,
        workers: int = 0,
        sim_users: int = 40,
        sim_departments: int = 5,
        env: dict | None = None,
        fast_sweeps: bool | None = None,
        worker_threads: int = 2,
        latency_ms: dict[str, int] | None = None,
        receiver_delay: float = 0.0,
        web_processes: int = 1,
        follow_sim_clock: bool = False,
    ):
        from tests.conftest import TEST_ENV

        self.workdir = Path(workdir)
        self.embedded = workers == 0
        self.web_processes = web_processes  # uvicorn processes per serve (--workers)
        if self.embedded and webs != 1:
            raise ValueError("the embedded setup is one serve process")
        self.fast_sweeps = (not LONG) if fast_sweeps is None else fast_sweeps
        self.web_ports = [free_port() for _ in range(webs)]
        self.web_urls = [f"http://127.0.0.1:{p}" for p in self.web_ports]
        self.test_env = TEST_ENV
        self.sim_users, self.sim_departments = sim_users, sim_departments
        self.extra_env = dict(env or {})
        self.worker_threads = worker_threads
        self.latency_ms = dict(latency_ms or {})
        self.receiver_delay = receiver_delay
        self.follow_sim_clock = follow_sim_clock  # SIM_CLOCK_URL: jumps of the emulator's clock move wqbot's
        self.procs: list[Proc] = []
        self.sim = None
        self._sim_thread = None
        self.receiver = None

    # -- set-up -------------------------------------------------------------------------------
    def _start_sim(self) -> str:
        from sim import SimConfig, create_app
        from sim.server import ServerThread

        e = self.test_env
        cfg = SimConfig(
            corp_id=e["WECOM_CORP_ID"],
            agent_id=int(e["WECOM_AGENT_ID"]),
            app_secret=e["WECOM_APP_SECRET"],
            contacts_secret=e["WECOM_CONTACTS_SECRET"],
            token=e["WECOM_TOKEN"],
            aes_key=e["WECOM_AES_KEY"],
            contacts_token=e["WECOM_CONTACTS_TOKEN"],
            contacts_aes_key=e["WECOM_CONTACTS_AES_KEY"],
            callback_url=f"{self.web_urls[0]}/wecom/callback",
            users=self.sim_users,
            departments=self.sim_departments,
            seed=11,
        )
        app = create_app(cfg)
        self.sim = app.state.sim
        for api, ms in self.latency_ms.items():
            self.sim.faults.add({"path": api, "kind": "latency", "latency_ms": ms})
        self._sim_thread = ServerThread(app)
        return self._sim_thread.start()

    def child_env(self) -> dict:
        base = {k: v for k, v in os.environ.items() if not k.startswith(STRIP)}
        env = {
            **base,
            **self.test_env,
            "WECOM_API_BASE": self.sim_url,
            "WECOM_OAUTH_BASE": self.sim_url,
            "WECOM_SSO_BASE": self.sim_url,
            "PUBLIC_URL": self.web_urls[0],
            "WEIQIAN_WEBHOOK_URL": self.receiver.url,
            "WEIQIAN_WEBHOOK_SECRET": WEBHOOK_SECRET,
            # the same queue as this test process (tests/conftest.py), so a test can enqueue into it
            "WQBOT_QUEUE_NAME": os.environ["WQBOT_QUEUE_NAME"],
            # only the tests that are about it run the periodic sync: it would disable the
            # members the callbacks create (the emulator does not know them)
            "SYNC_INTERVAL_MINUTES": str(366 * 24 * 60),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        if self.follow_sim_clock:
            env["SIM_CLOCK_URL"] = f"{self.sim_url}/sim/clock"
        env.update(self.extra_env)
        if self.fast_sweeps:
            env[FAST_SWEEPS_ENV] = "1"
        return env

    def start(self) -> "Cluster":
        # 微签's clock is the emulator's when wqbot follows it (the time wqbot signs with)
        clock = (lambda: self.sim.clock.now()) if self.follow_sim_clock else time.time
        self.receiver = Receiver(self.receiver_delay, clock=clock)
        self.sim_url = self._start_sim()
        env = self.child_env()
        self.env = env
        # the directory first: notifications go to members the store knows
        self.run_cli(["sync", "--full"], timeout=120)
        for i, (port, url) in enumerate(zip(self.web_ports, self.web_urls, strict=True)):
            args = ["serve", "--port", str(port), "--workers", str(self.web_processes)]
            args += [] if self.embedded else ["--no-worker"]
            self.procs.append(Proc(f"web{i}", args, self.workdir, env, ready_url=f"{url}/healthz"))
        for i in range(0 if self.embedded else 2):
            self.procs.append(Proc(f"worker{i}", ["worker", "--workers", str(self.worker_threads)], self.workdir, env))
        for p in self.procs:
            p.start(wait=False)
        for p in self.procs:
            p.wait_ready()
        return self

    def run_cli(self, args: list[str], timeout: float = 120) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "tests.reliability.cluster", *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise AssertionError(
                f"wqbot {' '.join(args)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
            )
        return r.stdout + r.stderr

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        if self._sim_thread is not None:
            self._sim_thread.stop()
        if self.receiver is not None:
            self.receiver.close()

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- views ----------------------------------------------------------------------------------
    @property
    def webs(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("web")]

    @property
    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("worker")]

    @property
    def task_runners(self) -> list[Proc]:
        """The processes that execute queued tasks (a kill there can cut a task in half)."""
        return self.webs if self.embedded else self.workers

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def logs(self, n: int = 1500) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(n)}" for p in self.procs)

    def member_ids(self) -> list[str]:
        """Active members the app can message (the emulator's directory)."""
        return sorted(u.userid for u in self.sim.directory.users.values() if u.status == 1)

    def calls(self, api: str) -> list[dict]:
        for _ in range(50):
            try:
                log = list(self.sim.calls)  # the emulator's thread may be appending to it
                break
            except RuntimeError:
                time.sleep(0.01)
        return [c for c in log if c["api"] == api]


# -- 微签's webhook endpoint ----------------------------------------------------------------------------
WEBHOOK_SECRET = "reliability-webhook-secret-DO-NOT-LOG-81f0"


class Receiver:
    """微签's side of the webhook: checks X-Wqbot-Signature (constant time) and answers 200, after
    `delay` seconds (so attempts are in flight when a worker is killed). A delivery counts as
    accepted once the 200 was written, whether or not wqbot lived to read it."""

    def __init__(self, delay: float = 0.0, clock=time.time):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.deliveries: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                started = time.time()
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                signed_at = webhook_signed_at(WEBHOOK_SECRET, self.headers.get("X-Wqbot-Signature", ""), raw)
                ok = signed_at is not None and abs(clock() - signed_at) <= 300
                if delay:
                    time.sleep(delay)
                status = 200 if ok else 401
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.wfile.flush()
                except OSError:
                    status = None  # wqbot hung up first: not an answer it could have seen
                with outer.lock:
                    outer.deliveries.append(
                        {
                            "raw": raw,
                            "headers": dict(self.headers),
                            "signature_ok": ok,
                            "status": status,
                            "started": started,
                            "at": time.time(),
                        }
                    )

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wqbot/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def accepted(self) -> list[dict]:
        with self.lock:
            return [d for d in self.deliveries if d["status"] is not None and 200 <= d["status"] < 300]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# -- what WeCom and 微签 send ----------------------------------------------------------------------------
def envelope(crypto, plaintext: str, corp_id: str, agent_id: str) -> tuple[dict, bytes]:
    ts = str(int(time.time()))
    nonce = os.urandom(5).hex()
    enc, sig = crypto.encrypt_message(plaintext, ts, nonce)
    body = (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt>"
        f"<AgentID><![CDATA[{agent_id}]]></AgentID></xml>"
    )
    return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body.encode()


class Senders:
    """Builds and posts what WeCom and 微签 send to wqbot (signed callbacks, notifications, taps)."""

    def __init__(self, cluster: Cluster):
        from bot.crypto import WeComCrypto

        e = cluster.test_env
        self.cluster = cluster
        self.corp = e["WECOM_CORP_ID"]
        self.agent = e["WECOM_AGENT_ID"]
        self.app_crypto = WeComCrypto(e["WECOM_TOKEN"], e["WECOM_AES_KEY"], self.corp)
        self.contacts_crypto = WeComCrypto(e["WECOM_CONTACTS_TOKEN"], e["WECOM_CONTACTS_AES_KEY"], self.corp)
        self.auth = {"Authorization": f"Bearer {e['WEIQIAN_API_TOKEN']}"}

    def change_contact(self, change_type: str, userid: str, name: str) -> str:
        from bot.callback.xml import document

        return document(
            {
                "ToUserName": self.corp,
                "FromUserName": "sys",
                "CreateTime": int(time.time()),
                "MsgType": "event",
                "Event": "change_contact",
                "ChangeType": change_type,
                "UserID": userid,
                "Name": name,
                "Department": "1",
                "Status": 1,
            }
        )

    def post_contacts(self, http, web_url: str, plaintext: str):
        params, body = envelope(self.contacts_crypto, plaintext, self.corp, "")
        return http.post(
            f"{web_url}/wecom/contacts/callback", params=params, content=body, headers={"Content-Type": "text/xml"}
        )

    def post_app(self, http, web_url: str, plaintext: str):
        params, body = envelope(self.app_crypto, plaintext, self.corp, self.agent)
        return http.post(f"{web_url}/wecom/callback", params=params, content=body, headers={"Content-Type": "text/xml"})

    def post_notification(self, http, web_url: str, body: dict):
        return http.post(f"{web_url}/api/v1/notifications", json=body, headers=self.auth)

    def tap_plaintext(self, userid: str, card_id: str, key: str) -> str:
        """The template_card_event WeCom sends when `userid` taps `key` on the card: the emulator
        issues the tap's ResponseCode, so wqbot's later update_template_card is checked as WeCom would."""
        from bot.callback.xml import document

        sim = self.cluster.sim
        fields = sim.messaging.tap(userid, card_id, key, None, True)
        return document(sim.callbacks.member_event(userid, {"MsgType": "event", **fields}))

    def reply_fields(self, response) -> dict | None:
        """The decrypted passive reply of a callback answer (None for an empty body)."""
        from bot.callback.xml import parse

        if response.status_code != 200 or not response.text.strip():
            return None
        env = parse(response.text)
        return parse(
            self.app_crypto.decrypt_message(env["MsgSignature"], str(env["TimeStamp"]), env["Nonce"], env["Encrypt"])
        )


def card_of(notification_id: str, task_id: str) -> str:
    from bot.notify.cards import card_id

    return card_id(notification_id, task_id, 0)


# -- chaos ---------------------------------------------------------------------------------------------
class Chaos(threading.Thread):
    """kill -9 random processes at random moments and restart them, until `stop` is set.

    Each round: wait a random up time, pick a target set (one web process, one worker, or one of
    each at the same moment), kill -9 it, keep it down a random 0.2-2 s, restart and wait until it
    serves again. `events` records (time, what, names)."""

    def __init__(self, cluster: Cluster, *, rounds: int, up: tuple[float, float], seed: int | None = None):
        super().__init__(daemon=True, name="chaos")
        self.cluster = cluster
        self.rounds = rounds
        self.up = up
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.events: list[tuple[float, str, tuple[str, ...]]] = []
        self.error: BaseException | None = None

    def targets(self) -> list[Proc]:
        c = self.cluster
        if c.embedded:
            return c.webs
        choice = self.rng.choice(("web", "worker", "both"))
        web, worker = self.rng.choice(c.webs), self.rng.choice(c.workers)
        return {"web": [web], "worker": [worker], "both": [web, worker]}[choice]

    def run(self) -> None:
        try:
            for _ in range(self.rounds):
                if self.stop.wait(self.rng.uniform(*self.up)):
                    return
                victims = self.targets()
                for p in victims:
                    at = p.kill9()
                    self.events.append((at, "kill", (p.name,)))
                time.sleep(self.rng.uniform(0.2, 2.0))
                for p in victims:
                    p.start(wait=False)
                for p in victims:
                    p.wait_ready(timeout=60)
                self.events.append((time.time(), "up", tuple(p.name for p in victims)))
        except BaseException as e:  # reported by the test
            self.error = e

    def kills(self) -> list[tuple[float, str]]:
        return [(at, names[0]) for at, what, names in self.events if what == "kill"]


def killed_near(kills: list[tuple[float, str]], names: set[str], start: float, end: float, window: float) -> bool:
    """Was one of `names` killed while a call ran from `start` to `end`, or within `window` seconds
    after it (before its answer was recorded)?"""
    return any(n in names and start - 0.05 <= k <= end + window for k, n in kills)


# -- the child process entry: `wqbot ARGS`, with fast sweeps when asked ------------------------------------
def _apply_fast_sweeps() -> None:
    import importlib

    for (module, name), value in FAST_SWEEPS.items():
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            raise SystemExit(f"{module}.{name} is gone: update tests/reliability/cluster.py FAST_SWEEPS")
        setattr(mod, name, value)


if __name__ == "__main__":
    import logging

    logging.captureWarnings(True)
    if os.environ.get(FAST_SWEEPS_ENV) == "1":
        _apply_fast_sweeps()
    from bot.cli import main

    sys.exit(main(sys.argv[1:]))
