"""Sign-notification benchmark, end to end against the `sim` WeCom emulator.

Three processes on loopback: the emulator (`wqbot sim`, 5,200 members, callbacks to wqbot),
wqbot (`wqbot serve`: SQLite store + embedded queue with its in-process worker; or with
`--backend pg`: PostgreSQL + Redis, `wqbot serve --no-worker` and a separate `wqbot worker`), and
this script, which plays 微签: it POSTs notifications, taps cards through the emulator's control
API, and receives the signed webhooks on its own HTTP server (signature checked).

Per sample (a fresh approve task to 5,000 members):

  fan-out         POST /api/v1/notifications → wqbot reports every message/send done
                  (GET …/{id} leaves "queued"); message/send calls counted by the emulator
                  (must be 5: 1,000 userids per call)
  tap-to-webhook  (after --idle seconds, so the queue's workers are idle as when people tap)
                  a member taps 同意 (emulator → signed callback → wqbot → passive reply) → every
                  other card updated (5 update_template_card calls answered by the emulator) and
                  the webhook received by 微签

Baselines measured in the same run, on the same processes:

  raw sends   the 5 message/send calls of 1,000 userids made directly with httpx (no wqbot)
  raw tap     a 帮助 menu click through the same emulator → wqbot callback path (a passive reply,
              no store writes beyond the delivery key, no queue)

    python -m bench.notify                 # SQLite + embedded queue, 11 samples
    python -m bench.notify --backend pg    # PostgreSQL + Redis, separate worker process
    python -m bench.notify --samples 21 --recipients 5000

Targets: fan-out ≤ 2 s, tap-to-webhook p50 ≤ 200 ms. The machine has 2 cores shared
with other developers' work: absolute times move with their load; the ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bot.notify.webhook import check_signature

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("WQBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("WQBOT_BENCH_REDIS", "redis://127.0.0.1:6379/0")
API_TOKEN = "bench-api-token-" + secrets.token_hex(8)
WEBHOOK_SECRET = "bench-webhook-secret-" + secrets.token_hex(8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 微签's webhook receiver ----------------------------------------------------------------------
class Receiver:
    def __init__(self):
        self.got: dict[str, float] = {}  # task_id -> arrival time
        self.bad = 0
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                at = time.perf_counter()
                header = self.headers.get("X-Wqbot-Signature", "")
                ok = check_signature(WEBHOOK_SECRET, header, raw, time.time()) is None
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with outer.cond:
                    if ok:
                        outer.got.setdefault(json.loads(raw)["task_id"], at)
                    else:
                        outer.bad += 1
                    outer.cond.notify_all()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/weiqian/webhook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def wait(self, task_id: str, timeout: float = 30.0) -> float:
        deadline = time.time() + timeout
        with self.cond:
            while task_id not in self.got:
                left = deadline - time.time()
                if left <= 0:
                    raise SystemExit(f"no webhook for {task_id} within {timeout} s")
                self.cond.wait(left)
            return self.got[task_id]


# -- processes ---------------------------------------------------------------------------------------
class Proc:
    def __init__(self, name: str, argv: list[str], env: dict, ready: str | None = None, timeout: float = 120):
        self.name = name
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bench-notify-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "--log-format", "text", *argv],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = ""
        if ready:
            deadline = time.time() + timeout
            while time.time() < deadline:
                self.output = Path(self.log.name).read_text()
                if re.search(ready, self.output):
                    return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            raise SystemExit(f"{name} did not start:\n{self.output[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


# -- the run -------------------------------------------------------------------------------------------
def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def api_calls(sim: httpx.Client, api: str) -> tuple[int, int]:
    s = sim.get("/sim/calls/summary").json()["apis"].get(api, {"calls": 0, "errors": {}})
    return s["calls"], sum(s["errors"].values())


def wait_calls(sim: httpx.Client, api: str, target: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while api_calls(sim, api)[0] < target:
        if time.time() > deadline:
            raise SystemExit(f"{api}: fewer than {target} calls within {timeout} s")
        time.sleep(0.002)


def run(args) -> dict:
    from bot.notify.cards import card_id
    from sim.config import DEFAULTS

    tmp = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    receiver = Receiver()
    wq_port = free_port()
    wq_url = f"http://127.0.0.1:{wq_port}"
    procs: list[Proc] = []
    pg_db = None
    try:
        sim_env = {**os.environ, **DEFAULTS}
        sim_proc = Proc(
            "sim",
            [
                "sim",
                "--port",
                "0",
                "--users",
                str(args.recipients + 200),
                "--departments",
                "20",
                "--seed",
                "6",
                "--callback-url",
                f"{wq_url}/wecom/callback",
            ],
            sim_env,
            ready=r"WECOM_CONTACTS_AES_KEY",
        )
        procs.append(sim_proc)
        sim_url = re.search(r"WECOM_API_BASE=(\S+)", sim_proc.output).group(1)
        if args.backend == "pg":
            import psycopg2

            pg_db = f"wqbot_bench_notify_{secrets.token_hex(3)}"
            conn = psycopg2.connect(PG_ADMIN)
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{pg_db}"')
            conn.close()
            database_url, queue_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_db, REDIS
        else:
            database_url, queue_url = f"sqlite:///{tmp / 'wqbot.db'}", f"sqlite:///{tmp / 'queue.db'}"
        env = {
            **os.environ,
            **DEFAULTS,
            "WECOM_API_BASE": sim_url,
            "WECOM_OAUTH_BASE": sim_url,
            "WECOM_SSO_BASE": sim_url,
            "PUBLIC_URL": wq_url,
            "H5_URL": "http://127.0.0.1:9/h5/",
            "DATABASE_URL": database_url,
            "QUEUE_URL": queue_url,
            "SECRET_KEY": secrets.token_hex(16),
            "WEIQIAN_API_TOKEN": API_TOKEN,
            "WEIQIAN_WEBHOOK_URL": receiver.url,
            "WEIQIAN_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "WQBOT_QUEUE_NAME": f"bench-notify-{secrets.token_hex(3)}",
            "WQBOT_LOG_FORMAT": "text",
        }
        sync = subprocess.run(
            [sys.executable, "-m", "bot.cli", "sync", "--full"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if sync.returncode != 0:
            raise SystemExit("wqbot sync failed:\n" + sync.stdout[-2000:] + sync.stderr[-2000:])
        serve = ["serve", "--port", str(wq_port)] + (["--no-worker"] if args.backend == "pg" else [])
        procs.append(Proc("wqbot", serve, env))
        if args.backend == "pg":
            procs.append(Proc("worker", ["worker", "--workers", "4"], env))
        wait_http(f"{wq_url}/healthz")

        sim = httpx.Client(base_url=sim_url, timeout=30)
        wq = httpx.Client(base_url=wq_url, timeout=30, headers={"Authorization": f"Bearer {API_TOKEN}"})
        users = [
            u["userid"]
            for u in sim.get("/sim/users", params={"limit": args.recipients + 200}).json()["users"]
            if u.get("status") == 1
        ][: args.recipients]
        if len(users) < args.recipients:
            raise SystemExit(f"the emulator has only {len(users)} active members")
        batches = -(-len(users) // 1000)

        # -- baseline: the same sends made directly ---------------------------------------------
        token = sim.get(
            "/cgi-bin/gettoken",
            params={"corpid": DEFAULTS["WECOM_CORP_ID"], "corpsecret": DEFAULTS["WECOM_APP_SECRET"]},
        ).json()["access_token"]
        raw_sends = []
        for r in range(3):
            t0 = time.perf_counter()
            for b in range(batches):
                body = {
                    "touser": "|".join(users[b * 1000 : (b + 1) * 1000]),
                    "msgtype": "template_card",
                    "agentid": int(DEFAULTS["WECOM_AGENT_ID"]),
                    "template_card": {
                        "card_type": "text_notice",
                        "main_title": {"title": "基线"},
                        "card_action": {"type": 1, "url": "http://127.0.0.1/"},
                        "task_id": f"baseline-{r}-{b}",
                    },
                }
                assert (
                    sim.post("/cgi-bin/message/send", params={"access_token": token}, json=body).json()["errcode"] == 0
                )
            raw_sends.append(time.perf_counter() - t0)

        # -- baseline: a callback round trip with a passive reply -------------------------------------
        raw_taps = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            r = sim.post("/sim/send", json={"userid": users[7], "type": "click", "key": "help"})
            assert r.status_code == 200, r.text
            raw_taps.append(time.perf_counter() - t0)

        fanouts, send_calls, taps, tap_replies = [], [], [], []
        # a week ahead of this machine's clock: open for the whole run, whatever the date
        week_from_now = datetime.fromtimestamp(int(time.time()) + 7 * 86400, timezone.utc).isoformat()
        for i in range(args.samples):
            nid, task = f"bench-{i}-{secrets.token_hex(3)}", f"BT-{i}-{secrets.token_hex(3)}"
            before_sends, _ = api_calls(sim, "message/send")
            t0 = time.perf_counter()
            r = wq.post(
                "/api/v1/notifications",
                json={
                    "id": nid,
                    "type": "approve",
                    "task_id": task,
                    "title": f"采购合同-2026-{i:03d}",
                    "description": "张三 发起了审批，请处理",
                    "initiator": users[0],
                    "recipients": users,
                    "url": f"/pages/task/task_detail?id={task}",
                    "deadline": week_from_now,
                },
            )
            assert r.status_code == 202, r.text
            while True:
                status = wq.get(f"/api/v1/notifications/{nid}").json()["status"]
                if status != "queued":
                    break
                time.sleep(0.002)
            fanouts.append(time.perf_counter() - t0)
            sends_now, send_errors = api_calls(sim, "message/send")
            if status != "sent" or send_errors:
                raise SystemExit(f"{nid}: status {status}, message/send errors {send_errors}")
            send_calls.append(sends_now - before_sends)

            time.sleep(args.idle)  # people tap later: the queue's workers are idle by then
            tapper = users[2500 + i]
            card = card_id(nid, task, (2500 + i) // 1000)
            updates_before, _ = api_calls(sim, "message/update_template_card")
            t0 = time.perf_counter()
            r = sim.post("/sim/send", json={"userid": tapper, "type": "card", "task_id": card, "key": "approve"})
            assert r.status_code == 200, r.text
            tap_replies.append(time.perf_counter() - t0)
            wait_calls(sim, "message/update_template_card", updates_before + batches)
            updated = time.perf_counter()
            hooked = receiver.wait(task)
            taps.append(max(updated, hooked) - t0)
            if args.verbose:
                print(
                    f"  sample {i}: fan-out {fanouts[-1]:.2f} s, reply {1000 * tap_replies[-1]:.0f} ms, cards "
                    f"{1000 * (updated - t0):.0f} ms, webhook {1000 * (hooked - t0):.0f} ms",
                    file=sys.stderr,
                )
            if i == 0:  # check once that the cards really changed
                for b in range(batches):
                    c = sim.get(f"/sim/cards/{card_id(nid, task, b)}").json()
                    assert c["all_updated"], c
                _, update_errors = api_calls(sim, "message/update_template_card")
                assert update_errors == 0
        return {
            "backend": args.backend,
            "recipients": len(users),
            "samples": args.samples,
            "fanout_s": {"first": fanouts[0], "p50": statistics.median(fanouts), "max": max(fanouts)},
            "message_send_calls": sorted(set(send_calls)),
            "raw_sends_s": min(raw_sends),
            "tap_to_webhook_ms": {
                "p50": 1000 * statistics.median(taps),
                "p90": 1000 * percentile(taps, 90),
                "max": 1000 * max(taps),
            },
            "tap_reply_ms_p50": 1000 * statistics.median(tap_replies),
            "raw_callback_ms_p50": 1000 * statistics.median(raw_taps),
            "bad_signatures": receiver.bad,
        }
    finally:
        for p in reversed(procs):
            p.stop()
        receiver.server.shutdown()
        if pg_db:
            import psycopg2

            conn = psycopg2.connect(PG_ADMIN)
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
            conn.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict) -> str:
    f, t = r["fanout_s"], r["tap_to_webhook_ms"]
    lines = [
        f"backend {r['backend']}: {r['recipients']} recipients, {r['samples']} samples "
        f"(2 shared cores: absolute times move with other work on the machine)",
        f"  fan-out           first {f['first']:.2f} s, p50 {f['p50']:.2f} s, max {f['max']:.2f} s   "
        f"(target ≤ 2 s)   message/send calls per notification: {r['message_send_calls']} (must be [5])",
        f"  raw sends         {r['raw_sends_s']:.2f} s for the same calls made directly   "
        f"→ wqbot fan-out p50 = {f['p50'] / r['raw_sends_s']:.1f}× the raw calls",
        f"  tap-to-webhook    p50 {t['p50']:.0f} ms, p90 {t['p90']:.0f} ms, max {t['max']:.0f} ms   "
        f"(target p50 ≤ 200 ms; every other card updated and the webhook received)",
        f"  tap reply         p50 {r['tap_reply_ms_p50']:.0f} ms (the tapper's own card, passive reply)",
        f"  raw callback      p50 {r['raw_callback_ms_p50']:.0f} ms (a 帮助 click through the same path)   "
        f"→ tap-to-webhook p50 = {t['p50'] / r['raw_callback_ms_p50']:.1f}× a bare callback",
        f"  webhook signatures refused by 微签: {r['bad_signatures']}",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    p.add_argument("--samples", type=int, default=11)
    p.add_argument("--recipients", type=int, default=5000)
    p.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    p.add_argument("--verbose", action="store_true", help="print every sample")
    p.add_argument("--idle", type=float, default=3.0, help="seconds between a fan-out and its tap (default 3)")
    args = p.parse_args(argv)
    r = run(args)
    print(report(r))
    if args.json:
        print(json.dumps(r, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
