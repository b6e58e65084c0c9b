"""Follow-up at scale: how long the morning digest and a full 工作台 tile fill take for a large
corp at the WeCom client's rate limits, and the most calls any rolling minute / hour sees.

The real code runs (bot/notify/digest.py `run`, once per minute as the scheduler would; bot/
workbench/cli.py `fill`) against a SQLite store holding `--members` members, each a recipient of
two open tasks (one approve, one sign). WeCom is an in-process httpx MockTransport answering ok;
the client's LocalRateLimiter at the settings' limits decides the pace. Time is virtual: the
limiter's waits and the minutes between digest runs advance a clock that `store.clock.now()`
also reads, so 100 minutes of digest take as long as the CPU needs, not 100 minutes. One sending
thread (the product uses 8 for latency; the limiter, not the threads, sets the pace).

Reported: the virtual duration, calls, the peak calls in any rolling 60 s and 3,600 s window
against the limiter's ceilings (WECOM_RATE_LIMIT_PER_MIN / PER_HOUR), and wqbot's CPU per member
as a ratio to a baseline measured in the same run: the same number of bare `message_send` calls
through the same client and transport (the client's own cost per call, no store work).

    python -m bench.followup                      # 100,000 members (a few minutes of CPU)
    python -m bench.followup --members 20000
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


class VirtualClock:
    """Seconds that pass only when someone sleeps (the rate limiter's waits) or the bench says so."""

    def __init__(self, start: float):
        self.t = start
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += max(0.0, seconds)

    def at_least(self, t: float) -> None:
        with self.lock:
            self.t = max(self.t, t)


def peak(times: list[float], window: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.followup")
    p.add_argument("--members", type=int, default=100_000)
    args = p.parse_args(argv)
    n = args.members
    tmp = Path(tempfile.mkdtemp(prefix="wqbot-bench-followup-"))
    env = {
        "WECOM_CORP_ID": "wwbench0001",
        "WECOM_AGENT_ID": "1000002",
        "WECOM_APP_SECRET": "bench-secret",
        "WECOM_TOKEN": "BenchToken",
        "WECOM_AES_KEY": "AvluMXaJSmrivhqi8EPrQGiww9Wp/2BN50/kzaCNN/Q",
        "SECRET_KEY": "bench",
        "WEIQIAN_API_TOKEN": "bench",
        "DATABASE_URL": f"sqlite:///{tmp / 'wqbot.db'}",
        "QUEUE_URL": f"sqlite:///{tmp / 'queue.db'}",
        "WECOM_API_BASE": "http://wecom.bench",
        "PUBLIC_URL": "https://wqbot.example.com",
        "DIGEST_AT": "09:00",
        "DIGEST_WEEKDAYS": "1-7",
    }
    os.environ.update(env)

    from datetime import datetime, timedelta

    import settings as settings_mod
    from bot.notify import digest
    from bot.notify.push import insert_ignore
    from bot.wecom import Limits, WeComClient
    from bot.wecom._ratelimit import LocalRateLimiter
    from bot.workbench import cli as wb_cli
    from bot.workbench import refresh
    from store import clock as store_clock
    from store import init_store
    from store.directory import User
    from store.notifications import NotifyRecipient, NotifyTask

    s = settings_mod.load(env=env, dotenv=None)
    settings_mod.override(s)
    database = init_store(s.database_url)

    # a 09:00 China time some day ahead, as the virtual start
    cst = store_clock.CST
    start = (datetime.now(cst) + timedelta(days=1)).replace(hour=9, minute=0, second=5, microsecond=0).timestamp()
    vclock = VirtualClock(start - 3600)
    store_clock._source = vclock  # the one clock wqbot reads

    # -- the store: n members, each in one approve and one sign task ------------------------------
    t0 = time.perf_counter()
    per_task = 1000
    tasks = max(1, (n + per_task - 1) // per_task)
    with database.atomic():
        insert_ignore(
            User,
            [
                dict(
                    userid=f"u{i:06d}",
                    name=f"成员{i}",
                    active=True,
                    status=1,
                    detail_hash="",
                    dept_hash="",
                    details_at=0.0,
                    created_at=vclock.t,
                    updated_at=vclock.t,
                )
                for i in range(n)
            ],
        )
        for kind in ("approve", "sign"):
            for k in range(tasks):
                tid = f"{kind}-{k}"
                NotifyTask.create(
                    task_id=tid,
                    kind=kind,
                    title=f"合同 {tid}",
                    notification=f"n-{tid}",
                    url=f"/pages/task/task_detail?id={tid}",
                    deadline=start + 7 * 86400,
                    created_at=vclock.t - k,
                    updated_at=vclock.t,
                )
                insert_ignore(
                    NotifyRecipient,
                    [
                        dict(
                            notification=f"n-{tid}",
                            task_id=tid,
                            key=f"u{i:06d}",
                            userid=f"u{i:06d}",
                            status="sent",
                            reason=None,
                            card=None,
                            round=1,
                            updated_at=vclock.t,
                        )
                        for i in range(k * per_task, min(n, (k + 1) * per_task))
                    ],
                )
    print(f"store: {n:,} members, {2 * tasks} tasks, in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    calls: list[float] = []

    def wecom(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/gettoken"):
            return httpx.Response(200, json={"errcode": 0, "access_token": "T", "expires_in": 7200})
        calls.append(vclock.t)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    def client() -> WeComClient:
        return WeComClient(
            s,
            http=httpx.Client(transport=httpx.MockTransport(wecom)),
            sleep=vclock.sleep,
            limiter=LocalRateLimiter(Limits.from_settings(s), clock=vclock),
        )

    digest.THREADS = refresh.THREADS = 1
    limits = Limits.from_settings(s)
    out: dict = {"members": n, "limits": {"per_min": limits.per_min, "per_hour": limits.per_hour}}

    # -- baseline: bare message_send calls through the same client ----------------------------------
    base_n = min(n, 20_000)
    c = client()
    body = {"touser": "u000001", "msgtype": "text", "text": {"content": "x"}}
    cpu = time.process_time()
    for _ in range(base_n):
        c.message_send(body)
    base_cpu = (time.process_time() - cpu) / base_n
    calls.clear()

    # -- the digest: one run a minute from 09:00 ------------------------------------------------------
    vclock.at_least(start)
    c = client()
    cpu = time.process_time()
    runs, sent = 0, 0
    while sent < n and runs < 10_000:
        vclock.at_least(start + 60 * runs)
        sent += digest.run(s, client=c).get("sent", 0)
        runs += 1
    digest_cpu = time.process_time() - cpu
    out["digest"] = {
        "sent": sent,
        "minutes": round((max(calls) - start) / 60, 1),
        "per_run": digest.per_minute(s),
        "peak_60s": peak(calls, 60),
        "peak_3600s": peak(calls, 3600),
        "cpu_per_member_ms": round(digest_cpu / max(sent, 1) * 1000, 3),
        "cpu_vs_bare_call": round(digest_cpu / max(sent, 1) / base_cpu, 1),
    }
    print(json.dumps(out["digest"]), file=sys.stderr)

    # -- the tile fill, on fresh rate buckets (another API) ------------------------------------------
    calls.clear()
    c = client()
    refresh.template_set(s, c)
    calls.clear()
    fill_start = vclock.t
    cpu = time.process_time()
    rc = wb_cli.fill(s, c, restart=True, out=io.StringIO())
    fill_cpu = time.process_time() - cpu
    out["fill"] = {
        "exit": rc,
        "calls": len(calls),
        "minutes": round((max(calls) - fill_start) / 60, 1),
        "estimate_minutes": round(wb_cli.estimate_seconds(n, limits) / 60, 1),
        "peak_60s": peak(calls, 60),
        "peak_3600s": peak(calls, 3600),
        "cpu_per_member_ms": round(fill_cpu / max(len(calls), 1) * 1000, 3),
        "cpu_vs_bare_call": round(fill_cpu / max(len(calls), 1) / base_cpu, 1),
    }
    out["bare_call_cpu_ms"] = round(base_cpu * 1000, 3)
    ok = out["fill"]["peak_60s"] <= limits.per_min and out["digest"]["peak_60s"] <= limits.per_min
    ok = ok and out["fill"]["peak_3600s"] <= limits.per_hour and out["digest"]["peak_3600s"] <= limits.per_hour
    out["under_the_caps"] = ok
    print(json.dumps(out, ensure_ascii=False, indent=2))
    database.close()
    return 0 if ok and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
