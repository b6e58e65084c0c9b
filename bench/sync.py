"""Directory sync benchmark: 100,000 members / 2,000 departments served by the `sim`
WeCom emulator (its own process, on loopback), synced by wqbot with the WeCom client's rate
limiter at its production defaults, on SQLite and on PostgreSQL, in list and list_id mode.

Per backend and mode, in a fresh store, each in its own process (so peak RSS is that run's):

  first      the first sync (list_id: the periodic run's SYNC_DETAIL_BUDGET of user/get)
  no-change  a re-sync with nothing changed: rows written must be 0
             (list_id: in the steady state, every member's details already stored)
  1 %        a re-sync after 1 % of the members changed: rows written must equal the changes
             (list: half position, half department; list_id: department moves, which is what
             user/list_id shows — other details arrive by the live events and the rotation)

Reported per step: wall time, CPU seconds of wqbot and of the emulator (which bound dominates:
when wall ≫ both CPUs the client is waiting on the rate limiter), peak RSS, API calls, rows
written (as counted by the run, and by the database itself: SQLite total_changes(), PostgreSQL
pg_stat_user_tables), feed rows added.

    python -m bench.sync                                   # everything (about 10 minutes)
    python -m bench.sync --users 20000 --departments 400   # smaller
    python -m bench.sync --backends sqlite --modes list

PostgreSQL rows need 127.0.0.1:5432 (user postgres) and Redis 127.0.0.1:6379 (the client's shared
rate limiter and token store in that setup); each run uses its own database, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("WQBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("WQBOT_BENCH_REDIS", "redis://127.0.0.1:6379/0")
DIRECTORY_TABLES = ("user", "department", "user_department", "directory_change")


# -- the emulator ------------------------------------------------------------------------------------
class Emulator:
    def __init__(self, users: int, departments: int):
        self.proc = subprocess.Popen(
            [
                sys.executable,
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
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **{k: "" for k in ("WECOM_CORP_ID", "WECOM_APP_SECRET", "WECOM_CONTACTS_SECRET")}},
        )
        self.url = None
        self.banner = []
        deadline = time.time() + 300
        for line in self.proc.stdout:
            self.banner.append(line.rstrip())
            m = re.search(r"WECOM_API_BASE=(\S+)", line)
            if m:
                self.url = m.group(1)
            if self.url and "WECOM_CONTACTS_AES_KEY" in line:
                break
            if time.time() > deadline:
                break
        if not self.url:
            raise SystemExit("the emulator did not start:\n" + "\n".join(self.banner))
        self.env = {}
        for line in self.banner:
            m = re.match(r"\s+(WECOM_[A-Z_]+)=(\S+)", line)
            if m and m.group(1) != "WECOM_API_BASE":
                self.env[m.group(1)] = m.group(2)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- one backend × mode, in a child process -----------------------------------------------------------
def child(args) -> None:
    import httpx

    env = json.loads(args.child_env)
    os.environ.update(env)
    import settings as settings_mod

    s = settings_mod.load(env={**os.environ}, dotenv=None)
    settings_mod.override(s)
    from bot.sync import run_sync
    from store import db, init_store
    from store.db import is_postgres
    from store.directory import Change

    init_store(s.database_url)
    sim = httpx.Client(base_url=s.wecom_api_base, timeout=120)
    emulator_pid = int(args.emulator_pid)

    def emu_cpu():
        fields = Path(f"/proc/{emulator_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def db_rows() -> int:
        if is_postgres():
            db.execute_sql("SELECT pg_stat_force_next_flush()")
            time.sleep(1.1)
            db.execute_sql("SELECT pg_stat_clear_snapshot()")
            names = ", ".join(f"'{t}'" for t in DIRECTORY_TABLES)
            return int(
                db.execute_sql(
                    f"SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                    f"FROM pg_stat_user_tables WHERE relname IN ({names})"
                ).fetchone()[0]
            )
        return int(db.execute_sql("SELECT n FROM bench_writes").fetchone()[0])

    if not is_postgres():
        # count rows written to the directory tables only (not the run record or the lease): temp
        # triggers fire for this connection, which is the one the sync writes with
        db.execute_sql("CREATE TEMP TABLE bench_writes (n INTEGER)")
        db.execute_sql("INSERT INTO bench_writes VALUES (0)")
        for t in DIRECTORY_TABLES:
            for op in ("INSERT", "UPDATE", "DELETE"):
                db.execute_sql(
                    f'CREATE TEMP TRIGGER bench_{t}_{op.lower()} AFTER {op} ON main."{t}" '
                    "BEGIN UPDATE bench_writes SET n = n + 1; END"
                )

    def elsewhere(uid: str, i: int) -> list[int]:
        """A department the member is not in now: a real move."""
        k = i * 13 + 5
        while depts[k % len(depts)] in member_of[uid]:
            k += 1
        return [depts[k % len(depts)]]

    def new_ip(flag: bool):
        r = sim.patch("/sim/config", json={"contacts_new_ip": flag})
        r.raise_for_status()

    def step(name, changes_made=None, **kw):
        rows0, feed0 = db_rows(), Change.select().count()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        e0 = emu_cpu()
        t0 = time.perf_counter()
        run = run_sync(s, trigger="bench", **kw)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        d = run.as_dict()
        out = {
            "step": name,
            "status": d["status"],
            "mode": d["mode"],
            "wall": round(wall, 2),
            "cpu": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
            "emulator_cpu": round(emu_cpu() - e0, 2),
            "peak_rss_mb": round(cpu1.ru_maxrss / 1024, 1),
            "api_calls": sum(d["api_calls"].values()),
            "calls": d["api_calls"],
            "rows_written": d["rows_written"],
            "db_rows": None,
            "feed_rows": Change.select().count() - feed0,
            "created": d["created"],
            "updated": d["updated"],
            "disabled": d["disabled"],
            "details_fetched": d["details_fetched"],
            "errors": d["errors"][:3],
            "warnings": d["warnings"][:3],
            "changes_made": changes_made,
        }
        out["db_rows"] = db_rows() - rows0
        print(json.dumps(out, ensure_ascii=False), flush=True)
        return out

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_rss_mb": round(baseline, 1)}), flush=True)
    users, offset, member_of = [], 0, {}
    while True:
        page = sim.get("/sim/users", params={"limit": 10000, "offset": offset, "status": 1}).json()
        users += [u["userid"] for u in page["users"]]
        member_of.update({u["userid"]: set(u["department"]) for u in page["users"]})
        offset += 10000
        if offset >= page["total"]:
            break
    depts = sorted(d["id"] for d in sim.get("/sim/departments").json()["departments"])
    n = max(1, len(users) // 100)
    changed = users[:: len(users) // n][:n]
    if args.mode == "list":
        new_ip(False)
        step("first")
        step("no-change")
        for i, uid in enumerate(changed):
            body = {"position": f"bench-{secrets.token_hex(3)}"} if i % 2 else {"department": elsewhere(uid, i)}
            sim.patch(f"/sim/users/{uid}", params={"callback": "false"}, json=body).raise_for_status()
        step("1%", changes_made=len(changed))
    else:
        new_ip(True)
        step("first")
        # reach the steady state (every member's details stored) the quick way: one list-mode pass,
        # then back to the 2022 restrictions. Not measured.
        new_ip(False)
        run_sync(s, trigger="bench", full=True)
        new_ip(True)
        run_sync(s, trigger="bench")
        step("no-change")
        for i, uid in enumerate(changed):
            sim.patch(
                f"/sim/users/{uid}", params={"callback": "false"}, json={"department": elsewhere(uid, i)}
            ).raise_for_status()
        step("1%", changes_made=len(changed))
    new_ip(False)


# -- the parent ---------------------------------------------------------------------------------------
def pg_create(name: str) -> str:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def pg_drop(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def run_child(emu: Emulator, backend: str, mode: str, tmp: Path) -> list[dict]:
    tag = secrets.token_hex(3)
    env = {
        **emu.env,
        "WECOM_API_BASE": emu.url,
        "SECRET_KEY": "bench-secret-key",
        "WEIQIAN_API_TOKEN": "bench-token",
        "WQBOT_LOG_FORMAT": "text",
        "WQBOT_QUEUE_NAME": f"wqbot-bench-{tag}",
    }
    pg_name = None
    if backend == "pg":
        pg_name = f"wqbot_bench_{tag}"
        env.update(DATABASE_URL=pg_create(pg_name), QUEUE_URL=REDIS)
    else:
        env.update(DATABASE_URL=f"sqlite:///{tmp / f'sync-{tag}.db'}", QUEUE_URL=f"sqlite:///{tmp / f'q-{tag}.db'}")
    try:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.sync",
                "--child",
                "--mode",
                mode,
                "--child-env",
                json.dumps(env),
                "--emulator-pid",
                str(emu.proc.pid),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        if p.returncode != 0:
            print(p.stderr[-3000:], file=sys.stderr)
        for r in rows:
            r.update(backend=backend, bench_mode=mode)
        return rows
    finally:
        if pg_name:
            pg_drop(pg_name)


def table(rows: list[dict], baseline: float | None) -> str:
    head = (
        "| backend | mode | step | wall s | wqbot CPU s | emulator CPU s | peak RSS MB | API calls "
        "| rows written (run / db) | changes made | feed rows | status |"
    )
    out = [head, "|" + "---|" * 12]
    for r in rows:
        if "step" not in r:
            continue
        out.append(
            f"| {r['backend']} | {r['mode']} | {r['step']} | {r['wall']} | {r['cpu']} | {r['emulator_cpu']} "
            f"| {r['peak_rss_mb']} | {r['api_calls']} | {r['rows_written']} / {r['db_rows']} "
            f"| {r['changes_made'] if r['changes_made'] is not None else '–'} | {r['feed_rows']} | {r['status']} |"
        )
    if baseline:
        out.append(f"\n(RSS of the process before its first sync: {baseline} MB.)")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--departments", type=int, default=2_000)
    p.add_argument("--backends", default="sqlite,pg")
    p.add_argument("--modes", default="list,list_id")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--child-env", help=argparse.SUPPRESS)
    p.add_argument("--emulator-pid", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="wqbot-bench-sync-"))
    t0 = time.time()
    emu = Emulator(args.users, args.departments)
    print(
        f"emulator up in {time.time() - t0:.1f}s at {emu.url} ({args.users} users, {args.departments} departments); "
        f"{os.cpu_count()} CPUs (shared)",
        file=sys.stderr,
    )
    rows, baseline = [], None
    try:
        for backend in args.backends.split(","):
            for mode in args.modes.split(","):
                t = time.time()
                got = run_child(emu, backend, mode, tmp)
                for r in got:
                    if "baseline_rss_mb" in r:
                        baseline = r["baseline_rss_mb"]
                rows += got
                print(f"{backend}/{mode}: {time.time() - t:.0f}s", file=sys.stderr)
                for r in got:
                    if "step" in r:
                        print(
                            f"  {r['step']:<9} wall {r['wall']:>7}s cpu {r['cpu']:>6}s emu {r['emulator_cpu']:>6}s "
                            f"rss {r['peak_rss_mb']:>6}MB calls {r['api_calls']:>6} rows {r['rows_written']}/"
                            f"{r['db_rows']} {r['status']} {r['calls']}",
                            file=sys.stderr,
                        )
    finally:
        emu.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows, baseline))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
