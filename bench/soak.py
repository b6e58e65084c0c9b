"""The long version of the reliability checks (docs/reliability.md), in one command.

    python -m bench.soak                 # the reliability suite, long form, both backends; then the load
    python -m bench.soak suite           # only: pytest tests/reliability -m "slow or not slow", both backends
    python -m bench.soak load            # only: 5 minutes of callbacks at 50 % of capacity during a 100k sync
    python -m bench.soak load --duration 30 --users 20000 --departments 2000 --setups embedded

suite  `pytest tests/reliability -m "slow or not slow"` with WQBOT_RELIABILITY_SCALE=long, once with
       WQBOT_TEST_BACKEND=sqlite and once with pg; pass/fail and the pytest summary of each.
load   (docs/reliability.md §5) per setup: embedded (`wqbot serve`: SQLite + huey SQLite, the worker in-process)
       and scaled out (PostgreSQL + Redis: `wqbot serve --workers 2 --no-worker` + 2 `wqbot worker`):
       1. a fresh store; the `wqbot sim` emulator serves a generated directory (100,000 members,
          10,000 departments by default; one emulator for both setups);
       2. capacity: wrk at full speed with pre-generated unique signed callbacks (bench/callback.py's
          loopback load, -c64, 10 s after a 3 s warm-up);
       3. sustained: unique signed callbacks at --fraction (50 %) of that capacity for --duration
          (300 s), open loop (bench/soak_load.py: latency from each callback's intended send time),
          while a full sync of the directory runs in the setup's own worker (queued as the console's
          立即同步 does: `ops.sync_now`); `--sync loop` queues the next as each ends;
       4. RSS of every wqbot process every --rss-interval seconds;
       5. afterwards, every delivery key the load sent is looked up in the store: a 200 whose key is
          missing is lost; the synced members are counted against the emulator's.
       Reports p50/p99/p999 (and during / outside a sync), errors (non-200, timeouts, connection
       errors), sent / 200 / applied / lost, each sync's duration, RSS at start / after warm-up /
       end, and the slope of a linear fit over the second half (a leak is flagged past +10 %).

PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379) are used when they answer;
every run creates its own database and queue name and drops them at the end. Needs wrk
(`apt-get install wrk`). See bench/README.md for how long each part takes.
"""

from __future__ import annotations

import argparse
import array
import bisect
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.callback import (
    ENV,
    PG_ADMIN,
    REDIS_URL,
    click_plain,
    free_port,
    make_requests,
    pg_available,
    pg_create,
    pg_drop,
    process_children,
    write_requests,
    wrk,
)
from bench.soak_load import OK

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# The emulator and wqbot agree on these (the emulator reads the same variable names); the
# callbacks are signed with ENV's token and key by bench/callback.py.
CREDENTIALS = {
    k: ENV[k]
    for k in (
        "WECOM_CORP_ID",
        "WECOM_AGENT_ID",
        "WECOM_APP_SECRET",
        "WECOM_TOKEN",
        "WECOM_AES_KEY",
        "WECOM_CONTACTS_TOKEN",
        "WECOM_CONTACTS_AES_KEY",
    )
}
CREDENTIALS["WECOM_CONTACTS_SECRET"] = "bench-contacts-secret"
LEAK_GROWTH = 0.10
WECOM_DEADLINE = 5.0  # seconds: WeCom's wait for a callback's answer (docs/wecom.md, "Callback delivery")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _clean_env() -> dict:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_", "WQBOT_", "PUBLIC_URL"))
    }


# -- the emulator ----------------------------------------------------------------------------------
class Emulator:
    def __init__(self, users: int, departments: int, workdir: Path):
        self.log = (workdir / "sim.log").open("w")
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "bot.cli",
                "--log-format",
                "text",
                "sim",
                "--port",
                "0",
                "--users",
                str(users),
                "--departments",
                str(departments),
                "--seed",
                "5",
            ],
            cwd=workdir,
            env={**_clean_env(), **CREDENTIALS},
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        self.url = None
        for line in self.proc.stdout:
            m = re.search(r"WECOM_API_BASE=(\S+)", line)
            if m:
                self.url = m.group(1)
            if "WECOM_CONTACTS_AES_KEY" in line:
                break
        if not self.url:
            self.stop()
            raise SystemExit("soak: the emulator did not start; see " + self.log.name)
        import httpx

        self.http = httpx.Client(base_url=self.url, timeout=60)
        count = lambda **q: self.http.get("/sim/users", params={"limit": 1, **q}).json()["total"]  # noqa: E731
        self.users = count()
        # active as bot/sync/records.py's is_active() has it: all but 2 (disabled) and 5 (left)
        self.active_users = self.users - count(status=2) - count(status=5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# -- a setup under test ----------------------------------------------------------------------------
class Setup:
    """wqbot started fresh against the emulator: embedded, or PostgreSQL + Redis scaled out."""

    def __init__(self, kind: str, emulator: Emulator, workdir: Path):
        self.kind, self.emulator = kind, emulator
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = []
        self.pg_url = self.queue_name = None
        # The syncs are the ones this run queues: the periodic one (due on the clock every 10
        # minutes by default) would sometimes take the first, big sync's place.
        self.env = {
            **_clean_env(),
            **ENV,
            **CREDENTIALS,
            "WECOM_API_BASE": emulator.url,
            "PYTHONPATH": str(ROOT),
            "LOG_FORMAT": "text",
            "SYNC_INTERVAL_MINUTES": "1440",
        }
        self.embedded = kind.startswith("embedded")
        # embedded: one web process; embeddedN: N web processes sharing the database and queue
        self.web_processes = int(kind[len("embedded") :] or 1) if self.embedded else 2
        if self.embedded:
            self.name = (
                f"embedded: wqbot serve --workers {self.web_processes} (SQLite + huey SQLite, worker in-process)"
            )
            self.env.update(
                DATABASE_URL=f"sqlite:///{workdir / 'wqbot.db'}", QUEUE_URL=f"sqlite:///{workdir / 'wqbot-queue.db'}"
            )
        else:
            self.name = "scaled out: PostgreSQL + Redis, serve --workers 2 --no-worker + 2 × wqbot worker"
            self.pg_url = pg_create(f"soak_{workdir.name}")
            self.queue_name = f"wqbot-soak-{workdir.name}"
            self.env.update(DATABASE_URL=self.pg_url, QUEUE_URL=REDIS_URL, WQBOT_QUEUE_NAME=self.queue_name)

    def _spawn(self, role: str, args: list[str]) -> None:
        out = (self.workdir / f"{role.replace(' ', '-')}.log").open("w")
        self.logs.append(out)
        self.procs[role] = subprocess.Popen(
            [str(Path(PY).parent / "wqbot"), *args],
            cwd=self.workdir,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        self.port = free_port()
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.embedded:
            self._spawn("serve", serve + ["--workers", str(self.web_processes)])
        else:
            self._spawn("web", serve + ["--workers", "2", "--no-worker"])
            self._wait_ready()  # migrated before the workers start on the same database
            self._spawn("worker 1", ["worker"])
            self._spawn("worker 2", ["worker"])
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        q, body = make_requests(1)[0]
        deadline = time.time() + 60
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{self.port}/wecom/callback", params=q, content=body, timeout=5)
                if r.status_code == 200:
                    return
                raise SystemExit(f"soak: {self.kind} answered {r.status_code}: {r.text[:300]}")
            except httpx.TransportError:
                dead = [role for role, p in self.procs.items() if p.poll() is not None]
                if dead or time.time() > deadline:
                    raise SystemExit(
                        f"soak: {self.kind}: {dead or 'server'} did not start; logs in {self.workdir}"
                    ) from None
                time.sleep(0.2)

    def processes(self) -> dict[int, str]:
        """pid → label for every wqbot process now (each role's process and its children)."""
        children = process_children()
        out = {}
        for role, proc in self.procs.items():
            out[proc.pid] = role
            todo = list(children.get(proc.pid, []))
            while todo:
                pid = todo.pop()
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                what = "resource tracker" if "resource_tracker" in cmd else "process"
                out[pid] = f"{role} / {what} {pid}"
                todo += children.get(pid, [])
        return out

    def enqueue_sync(self) -> None:
        """The console's 立即同步 (bot.ops.actions.sync_now) on the setup's own queue; its worker runs it."""
        script = (
            "from bot.app import build; from bot.ops.actions import sync_now; from settings import get_settings; "
            "from store import init_store; s = get_settings(); init_store(s.database_url); build(s); sync_now(s)"
        )
        subprocess.run(
            [PY, "-c", script],
            cwd=self.workdir,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )

    # -- the store ---------------------------------------------------------------------------
    def query(self, sql: str, params=()) -> list[tuple]:
        if self.embedded:
            import sqlite3

            conn = sqlite3.connect(f"file:{self.workdir / 'wqbot.db'}?mode=ro", uri=True, timeout=30)
            try:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
            finally:
                conn.close()
        import psycopg2

        conn = psycopg2.connect(self.pg_url)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur.fetchall()
        finally:
            conn.close()

    def sync_runs(self) -> list[dict]:
        cols = (
            "id",
            "trigger",
            "full",
            "status",
            "started_at",
            "finished_at",
            "users_seen",
            "created",
            "updated",
            "disabled",
        )
        try:
            quoted = ", ".join(f'"{c}"' for c in cols)  # FULL is a reserved word in PostgreSQL
            rows = self.query(f"SELECT {quoted} FROM sync_run ORDER BY id")
        except Exception:
            return []
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for role, proc in self.procs.items():
            try:
                proc.wait(60)  # a graceful stop waits for a sync in progress
            except subprocess.TimeoutExpired:
                log(f"{role} did not stop in 60 s; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for f in self.logs:
            f.close()

    def cleanup(self, keep: bool) -> None:
        if self.pg_url:
            pg_drop(self.pg_url)
        if self.queue_name:
            from huey import RedisHuey

            RedisHuey(self.queue_name, url=REDIS_URL).storage.flush_all()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


# -- RSS ---------------------------------------------------------------------------------------------
def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """RSS (and CPU time) of every wqbot process of a setup, every `interval` seconds."""

    def __init__(self, setup: Setup, interval: float):
        super().__init__(daemon=True)
        self.setup, self.interval = setup, interval
        self.series: dict[str, list[tuple[float, float]]] = {}  # label → [(t, MB)]
        self.cpu: dict[int, float] = {}
        self.cpu_start: dict[int, float] = {}
        self.halt = threading.Event()
        self.t0 = time.time()

    def sample(self) -> None:
        t = time.time() - self.t0
        for pid, label in self.setup.processes().items():
            kb = rss_kb(pid)
            if kb is None:
                continue
            self.series.setdefault(label, []).append((t, kb / 1024))
            c = cpu_seconds(pid)
            self.cpu_start.setdefault(pid, c)
            self.cpu[pid] = c

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.sample()

    def cpu_used(self) -> float:
        return sum(self.cpu[p] - self.cpu_start[p] for p in self.cpu)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else math.nan


def rss_summary(points: list[tuple[float, float]], warm_at: float, duration: float) -> dict:
    """start / after warm-up / end / max (MB), the slope of a least-squares line over the second
    half (MB/min), and whether it grew by more than LEAK_GROWTH after warm-up. Medians of a few
    samples, so a sync's passing peak at one sample is not read as the level."""
    if not points:
        return {}
    near = lambda t0, t1: [mb for t, mb in points if t0 <= t <= t1]  # noqa: E731
    start = points[0][1]
    warm = _median(near(warm_at, warm_at + 15)) if near(warm_at, warm_at + 15) else points[-1][1]
    end = _median([mb for _, mb in points[-5:]])
    second = [(t, mb) for t, mb in points if t >= duration / 2]
    slope = math.nan
    if len(second) >= 3:
        mt = sum(t for t, _ in second) / len(second)
        mm = sum(mb for _, mb in second) / len(second)
        var = sum((t - mt) ** 2 for t, _ in second)
        slope = sum((t - mt) * (mb - mm) for t, mb in second) / var * 60 if var else math.nan
    growth = (end - warm) / warm if warm else math.nan
    # growth after warm-up, or a second-half trend that would add that much over the run's length
    # (only over a long enough second half: a minute of it mostly shows a sync's passing peak)
    trend = slope * (duration / 60) / warm if warm and not math.isnan(slope) and duration >= 240 else 0.0
    return {
        "start": round(start, 1),
        "warm": round(warm, 1),
        "end": round(end, 1),
        "max": round(max(mb for _, mb in points), 1),
        "slope_mb_min": round(slope, 2),
        "growth": round(growth, 3),
        "leak": bool(growth > LEAK_GROWTH or trend > LEAK_GROWTH),
        "samples": len(points),
    }


# -- one setup's run --------------------------------------------------------------------------------
def percentile(sorted_xs, q: float) -> float | None:
    if not sorted_xs:
        return None
    return sorted_xs[min(len(sorted_xs) - 1, int(len(sorted_xs) * q))] * 1e3


def run_setup(kind: str, emulator: Emulator, files: dict, args, workdir: Path) -> dict:
    setup = Setup(kind, emulator, workdir)
    result: dict = {"setup": kind, "name": setup.name, "sync_mode": args.sync}
    sampler = None
    try:
        log(f"{kind}: starting")
        setup.start()
        wrk(setup.port, files["warm"], args.warmup, args.connections)
        probe = wrk(setup.port, files["probe"], args.probe, args.connections)
        rate = max(1.0, probe["rps"] * args.fraction)
        result["capacity"] = probe
        result["rate"] = rate
        log(
            f"{kind}: capacity {probe['rps']:,.0f}/s (p50 {probe['p50']:.1f} ms, p99 {probe['p99']:.1f} ms"
            + (", REQUEST FILE WRAPPED" if probe["wrapped"] else "")
            + f"); sustained load at {rate:,.0f}/s "
            f"for {args.duration:g} s"
            + {"once": ", one full sync", "loop": ", full syncs one after another", "off": ", no sync"}[args.sync]
        )

        out = workdir / "load"
        gen = subprocess.Popen(
            [
                PY,
                "-m",
                "bench.soak_load",
                "--port",
                str(setup.port),
                "--rate",
                f"{rate:.1f}",
                "--duration",
                str(args.duration),
                "--connections",
                str(args.connections),
                "--timeout",
                str(args.timeout),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        started = gen.stdout.readline()  # after it has signed every callback and connected
        if not started.startswith("started "):
            raise SystemExit("soak: the load generator did not start")
        load_start = float(started.split()[1])
        sampler = Sampler(setup, args.rss_interval)
        sampler.t0 = load_start
        sampler.start()
        triggers = []
        time.sleep(min(args.sync_delay, args.duration / 2))
        while gen.poll() is None:
            if args.sync != "off":
                runs = [r for r in setup.sync_runs() if r["trigger"] == "admin"]
                idle = all(r["finished_at"] is not None for r in setup.sync_runs())
                remaining = load_start + args.duration - time.time()
                # the next full sync once the last one finished (or a queued one never showed: a
                # periodic run held the lease and the console's job gave way)
                want = (len(runs) >= len(triggers) and idle) or (triggers and time.time() - triggers[-1] > 60 and idle)
                if want and remaining > 5 and (args.sync == "loop" or not triggers):
                    setup.enqueue_sync()
                    triggers.append(time.time())
            time.sleep(1)
        load_end = time.time()
        sampler.stop()
        if gen.returncode:
            raise SystemExit(f"soak: the load generator failed ({gen.returncode})")

        # figures while it still runs: the last sync may be in progress
        runs = setup.sync_runs()
        result["sync_triggers"] = len(triggers)
        result["server_cpu_seconds"] = round(sampler.cpu_used(), 1)
        log(f"{kind}: load done; stopping")
        setup.stop()
        runs = setup.sync_runs()  # after a graceful stop: a run in progress has finished or failed
        result["syncs"] = [
            {
                **r,
                "seconds": round(r["finished_at"] - r["started_at"], 1) if r["finished_at"] else None,
                "finished_during_load": bool(r["finished_at"] and r["finished_at"] <= load_end),
                "start_s": round(r["started_at"] - load_start, 1),
            }
            for r in runs
        ]
        result["store_users"], result["store_active_users"] = setup.query(
            'SELECT count(*), coalesce(sum(CASE WHEN active THEN 1 ELSE 0 END), 0) FROM "user"'
        )[0]
        result["emulator_users"], result["emulator_active_users"] = emulator.users, emulator.active_users

        result["load"] = analyse_load(out, setup, runs, load_start)
        first = next((r for r in runs if r["trigger"] == "admin" and r["finished_at"]), None)
        warm_at = (first["finished_at"] - sampler.t0 + 10) if first else args.duration / 3
        result["warm_at_s"] = round(warm_at, 1)
        result["rss"] = {
            label: rss_summary(points, warm_at, load_end - sampler.t0)
            for label, points in sorted(sampler.series.items())
        }
        result["rss_series"] = {
            label: [(round(t, 1), round(mb, 1)) for t, mb in points] for label, points in sampler.series.items()
        }
        return result
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        setup.stop()
        setup.cleanup(keep=args.keep)


def analyse_load(out: Path, setup: Setup, runs: list[dict], load_start: float) -> dict:
    import hashlib

    meta = json.loads((out / "meta.json").read_text())
    status = (out / "status.bin").read_bytes()
    lat, svc = array.array("d"), array.array("d")
    lat.frombytes((out / "latency.bin").read_bytes())
    svc.frombytes((out / "service.bin").read_bytes())
    total, rate, t0 = meta["total"], meta["rate"], meta["t0_wall"]
    salt = meta["salt"]
    # every key the load could have produced, looked up in the store (the probe's are older)
    stored = {r[0] for r in setup.query("SELECT key FROM delivery WHERE received_at >= %s", (t0 - 5,))}
    applied = lost = applied_unacked = 0
    for i in range(total):
        key = "a" + hashlib.sha1(click_plain(i, salt).encode()).hexdigest()
        here = key in stored
        applied += here
        if status[i] == OK and not here:
            lost += 1
        elif here and status[i] != OK:
            applied_unacked += 1
    ok = sorted(lat[i] for i in range(total) if status[i] == OK)
    # WeCom gives up on a callback after 5 s and sends it again: answered later than that counts
    # from when it was due, whatever the connection it waited for
    late = len(ok) - bisect.bisect_right(ok, WECOM_DEADLINE)
    ok_svc = sorted(svc[i] for i in range(total) if status[i] == OK)
    spans = [(r["started_at"], r["finished_at"] or float("inf")) for r in runs]
    in_sync = sorted(lat[i] for i in range(total) if status[i] == OK and any(a <= t0 + i / rate <= b for a, b in spans))
    outside = sorted(
        lat[i] for i in range(total) if status[i] == OK and not any(a <= t0 + i / rate <= b for a, b in spans)
    )
    c = meta["counts"]
    return {
        "rate": rate,
        "intended": total,
        "sent": total - c["not sent"],
        "ok": c["200"],
        "non200": c["non-200"],
        "timeouts": c["timeout"],
        "conn_errors": c["connection error"],
        "not_sent": c["not sent"],
        "codes": meta["codes"],
        "late": late,
        "applied": applied,
        "lost": lost,
        "applied_unacknowledged": applied_unacked,
        "p50": percentile(ok, 0.5),
        "p99": percentile(ok, 0.99),
        "p999": percentile(ok, 0.999),
        "max": ok[-1] * 1e3 if ok else None,
        "service_p50": percentile(ok_svc, 0.5),
        "service_p99": percentile(ok_svc, 0.99),
        "p99_during_sync": percentile(in_sync, 0.99),
        "n_during_sync": len(in_sync),
        "p99_outside_sync": percentile(outside, 0.99),
        "n_outside_sync": len(outside),
        "generator_cpu_seconds": round(meta["cpu_seconds"], 1),
        "reconnects": meta["reconnects"],
        "max_backlog": meta["max_backlog"],
        "windows": meta["windows"],
    }


# -- the report ----------------------------------------------------------------------------------------
def fmt(x, digits=1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def problems(r: dict) -> list[str]:
    out = []
    ld = r.get("load", {})
    for k in ("non200", "timeouts", "conn_errors", "not_sent", "lost"):
        if ld.get(k):
            out.append(f"{ld[k]:,} {k}")
    if ld.get("late"):
        out.append(f"{ld['late']:,} answered more than {WECOM_DEADLINE:g} s after they were due (WeCom retries those)")
    for label, s in r.get("rss", {}).items():
        if s.get("leak"):
            out.append(f"RSS of {label} grew {s['growth']:+.0%} after warm-up")
    admin = [s for s in r.get("syncs", []) if s["trigger"] == "admin"]
    if r.get("sync_mode") == "off":
        return out
    if not admin or not admin[0]["finished_during_load"]:
        out.append("the first full sync did not finish during the load")
    if any(s["status"] not in ("ok", "running") for s in admin):
        out.append("a sync ended " + ", ".join(sorted({s["status"] for s in admin} - {"ok"})))
    if (r.get("store_users"), r.get("store_active_users")) != (r.get("emulator_users"), r.get("emulator_active_users")):
        out.append(
            f"{r.get('store_users')} members ({r.get('store_active_users')} active) stored, the emulator has "
            f"{r.get('emulator_users')} ({r.get('emulator_active_users')} active)"
        )
    return out


def load_report(results: list[dict], args) -> str:
    syncs = {"once": "a full sync", "loop": "full syncs (one after another)", "off": "no sync"}[args.sync]
    lines = [
        f"## Load: callbacks at {args.fraction:.0%} of capacity for {args.duration:g} s during {syncs} of "
        f"{args.users:,} members / {args.departments:,} departments",
        f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores shared with other work; "
        f"latency from each callback's intended send time, open loop, {args.connections} connections)",
        "",
        "| setup | capacity/s (wrk) | rate/s | sent | 200 | non-200 | timeouts | conn. errors | > 5 s late "
        "| applied | lost | p50 ms | p99 ms | p999 ms | max ms | p99 during / outside sync | first sync s "
        "| syncs (ok) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        ld = r["load"]
        admin = [s for s in r["syncs"] if s["trigger"] == "admin"]
        first = admin[0] if admin else None
        lines.append(
            f"| {r['setup']} | {r['capacity']['rps']:,.0f} | {r['rate']:,.0f} | {ld['sent']:,} | {ld['ok']:,} | "
            f"{ld['non200']:,} | {ld['timeouts']:,} | {ld['conn_errors']:,} | {ld['late']:,} | {ld['applied']:,} | "
            f"{ld['lost']:,} | "
            f"{fmt(ld['p50'], 2)} | {fmt(ld['p99'], 1)} | {fmt(ld['p999'], 1)} | {fmt(ld['max'], 0)} | "
            f"{fmt(ld['p99_during_sync'])} / {fmt(ld['p99_outside_sync'])} | "
            f"{fmt(first['seconds']) if first and first['seconds'] else 'unfinished'}"
            f"{'' if not first or first['finished_during_load'] else ' (after the load)'} | "
            f"{len(admin)} ({sum(s['status'] == 'ok' for s in admin)}) |"
        )
    lines += [
        "",
        "RSS of each wqbot process (MB): after warm-up = once the first sync finished (+10 s); slope = "
        "least-squares line over the second half of the load",
        "",
        "| setup | process | start | after warm-up | end | max | slope MB/min | growth after warm-up | |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        for label, s in r["rss"].items():
            if not s:
                continue
            lines.append(
                f"| {r['setup']} | {label} | {s['start']} | {s['warm']} | {s['end']} | {s['max']} | "
                f"{fmt(s['slope_mb_min'], 2)} | {s['growth']:+.1%} | {'LEAK?' if s['leak'] else 'flat'} |"
            )
    lines.append("")
    for r in results:
        ld = r["load"]
        lines.append(
            f"- {r['setup']}: {r['name']}. Members stored {r['store_users']:,} "
            f"({r['store_active_users']:,} active) / emulator {r['emulator_users']:,} "
            f"({r['emulator_active_users']:,}). Service time (from the actual send) p50 "
            f"{fmt(ld['service_p50'], 2)} ms, p99 {fmt(ld['service_p99'])} ms. CPU: wqbot "
            f"{r['server_cpu_seconds']} s, load generator {ld['generator_cpu_seconds']} s. "
            + (f"HTTP codes: {ld['codes']}. " if ld["codes"] else "")
            + "Syncs: "
            + ", ".join(
                f"#{s['id']} {s['trigger']} {s['status']} "
                f"{fmt(s['seconds']) if s['seconds'] else '…'} s from t={s['start_s']} s"
                for s in r["syncs"]
            )
            + "."
        )
        bad = problems(r)
        lines.append(f"  **{'FAIL: ' + '; '.join(bad) if bad else 'pass'}**")
    return "\n".join(lines)


def run_load(args) -> tuple[list[dict], bool]:
    if shutil.which("wrk") is None:
        raise SystemExit("soak: wrk is not installed (apt-get install wrk)")
    setups = args.setups.split(",")
    if "pg" in setups and not pg_available():
        if args.pg:
            raise SystemExit(f"soak: --pg but PostgreSQL ({PG_ADMIN}) or Redis ({REDIS_URL}) does not answer")
        log("PostgreSQL/Redis not reachable: the scaled-out setup is skipped")
        setups.remove("pg")
    tmp = Path(tempfile.mkdtemp(prefix="wqbot-soak-"))
    results = []
    emulator = None
    try:
        log(f"generating {args.users:,} members / {args.departments:,} departments in the emulator…")
        emulator = Emulator(args.users, args.departments, tmp)
        log(f"emulator at {emulator.url}: {emulator.active_users:,} active members")
        n_warm, n_probe = int(args.max_rate * args.warmup), int(args.max_rate * args.probe)
        log(f"generating {n_warm + n_probe:,} unique signed callbacks for the capacity probe…")
        files = {"warm": tmp / "warm.tsv", "probe": tmp / "probe.tsv"}
        write_requests(files["warm"], make_requests(n_warm))
        write_requests(files["probe"], make_requests(n_probe))
        for kind in setups:
            r = run_setup(kind, emulator, files, args, tmp / kind)
            results.append(r)
            ld = r["load"]
            log(
                f"{kind}: {ld['ok']:,}/{ld['sent']:,} answered 200, applied {ld['applied']:,}, lost {ld['lost']}, "
                f"p50 {fmt(ld['p50'], 2)} p99 {fmt(ld['p99'])} p999 {fmt(ld['p999'])} ms; "
                + ("; ".join(problems(r)) or "no problems")
            )
    finally:
        if emulator is not None:
            emulator.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    return results, all(not problems(r) for r in results)


# -- the suite ---------------------------------------------------------------------------------------
def run_suite(args) -> tuple[list[dict], bool]:
    out = []
    if not (ROOT / "tests/reliability").is_dir():
        log("tests/reliability does not exist: nothing to run")
        return out, False
    logdir = Path(tempfile.mkdtemp(prefix="wqbot-soak-suite-"))
    for backend in args.backends.split(","):
        env = {**os.environ, "WQBOT_TEST_BACKEND": backend, "WQBOT_RELIABILITY_SCALE": "long"}
        path = logdir / f"pytest-{backend}.log"
        log(
            f"suite ({backend}): pytest tests/reliability -m 'slow or not slow', WQBOT_RELIABILITY_SCALE=long "
            f"(output: {path})"
        )
        t = time.time()
        with path.open("w") as f:
            rc = subprocess.run(
                [PY, "-m", "pytest", "tests/reliability", "-m", "slow or not slow", "-rfE", *args.pytest_args],
                cwd=ROOT,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
            ).returncode
        text = path.read_text(errors="replace")
        summary = re.findall(r"^=+ (.*? in [\d.]+s.*?) =+$", text, re.M)
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
        out.append(
            {
                "backend": backend,
                "returncode": rc,
                "seconds": round(time.time() - t),
                "summary": summary[-1] if summary else text.strip().splitlines()[-1:],
                "failed": failed,
                "log": str(path),
            }
        )
        log(f"suite ({backend}): {'pass' if rc == 0 else 'FAIL'}: {out[-1]['summary']}")
    return out, all(r["returncode"] == 0 for r in out)


def suite_report(results: list[dict]) -> str:
    lines = [
        "## Reliability suite, long form (WQBOT_RELIABILITY_SCALE=long, -m 'slow or not slow')",
        "",
        "| backend | result | pytest summary | minutes |",
        "|---|---|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {'pass' if r['returncode'] == 0 else 'FAIL'} | {r['summary']} | "
            f"{r['seconds'] / 60:.1f} |"
        )
        lines += [f"|  | failed: {name} | | |" for name in r["failed"][:20]]
    if not results:
        lines.append("| – | FAIL | tests/reliability is missing | |")
    lines.append("")
    lines += [f"- logs: {r['log']}" for r in results]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", nargs="?", choices=("all", "suite", "load"), default="all")
    g = p.add_argument_group("load")
    g.add_argument("--duration", type=float, default=300.0, help="seconds of sustained load per setup (300)")
    g.add_argument("--fraction", type=float, default=0.5, help="share of the measured capacity to send (0.5)")
    g.add_argument("--users", type=int, default=100_000, help="members in the emulator's directory")
    g.add_argument("--departments", type=int, default=10_000)
    g.add_argument(
        "--setups", default="embedded,pg", help="comma list of: embedded, embedded2 (2 web processes), pg (scaled out)"
    )
    g.add_argument("--pg", action="store_true", help="fail instead of skipping when PostgreSQL/Redis do not answer")
    g.add_argument("--no-pg", action="store_true", help="the embedded setup only")
    g.add_argument(
        "--sync",
        choices=("once", "loop", "off"),
        default="once",
        help="one full sync during the load (once), one after another until it ends (loop), or none",
    )
    g.add_argument("--sync-delay", type=float, default=5.0, help="seconds of load before the first sync")
    g.add_argument("--connections", type=int, default=64)
    g.add_argument("--timeout", type=float, default=5.0, help="seconds before a callback counts as timed out")
    g.add_argument("--probe", type=float, default=10.0, help="seconds of the capacity probe (wrk)")
    g.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk warm-up before the probe")
    g.add_argument("--max-rate", type=int, default=22000, help="requests generated per second of probe")
    g.add_argument("--rss-interval", type=float, default=2.0, help="seconds between RSS samples")
    g.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite files)")
    s = p.add_argument_group("suite")
    s.add_argument("--backends", default="sqlite,pg", help="WQBOT_TEST_BACKEND values to run the suite with")
    s.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[], help="passed on to pytest (last)")
    p.add_argument("--json", help="also write the raw figures here")
    args = p.parse_args(argv)
    # a plain `kill` still stops the servers and drops the databases (the finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.no_pg:
        args.setups = ",".join(x for x in args.setups.split(",") if x != "pg")
    report, raw, ok = [], {}, True
    if args.part in ("all", "suite"):
        raw["suite"], passed = run_suite(args)
        ok &= passed
        report.append(suite_report(raw["suite"]))
    if args.part in ("all", "load"):
        raw["load"], passed = run_load(args)
        ok &= passed
        report.append(load_report(raw["load"], args))
    print("\n\n".join(report))
    print(f"\n**soak: {'pass' if ok else 'FAIL'}**")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, ensure_ascii=False, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
