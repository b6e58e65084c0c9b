"""The emulator's own benchmark, so later sync/notify benchmarks know it is not their
bottleneck.

1. generation   100,000 members / 10,000 departments: seconds and peak RSS, in a fresh process,
                against the RSS of the same process before generating (baseline, same run).
2. list_id      `wqbot sim` under uvicorn in its own process; one client pages POST
                /cgi-bin/user/list_id to the end over loopback (limit 10,000 and 1,000):
                pages/s and rows/s, against a trivial API call (getcallbackip) on the same server.
3. user/get     the per-member detail call a list_id-mode sync makes: calls/s from one keep-alive
                http.client connection, and the server-side time per call from the emulator's own
                call log (quotas switched off for the measurement).

    python -m bench.sim_bench                    # 100k / 10k (about a minute)
    python -m bench.sim_bench --users 20000 --departments 2000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]

GEN_SNIPPET = """
import json, resource, sys, time
from sim.directory import Directory
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
d = Directory.generate({users}, {departments}, seed=1)
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = sum(len(u.department) for u in d.users.values())
print(json.dumps({{"seconds": elapsed, "base_kb": base, "peak_kb": peak, "users": len(d.users),
                  "departments": len(d.departments), "memberships": rows}}))
"""


def generation(users: int, departments: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", GEN_SNIPPET.format(users=users, departments=departments)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_sim(users: int, departments: int) -> tuple[subprocess.Popen, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "PUBLIC_URL"))}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "sim",
            "--port",
            "0",
            "--users",
            str(users),
            "--departments",
            str(departments),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = None
    for line in proc.stdout:
        m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
        if "WECOM_CONTACTS_AES_KEY" in line:
            break
    if url is None:
        proc.kill()
        raise SystemExit("wqbot sim did not start")
    for _ in range(200):
        try:
            httpx.get(url + "/sim", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return proc, url, time.perf_counter() - t0


def token(c: httpx.Client, secret: str) -> str:
    from sim.config import DEFAULTS

    return c.get("/cgi-bin/gettoken", params={"corpid": DEFAULTS["WECOM_CORP_ID"], "corpsecret": secret}).json()[
        "access_token"
    ]


def page_through(c: httpx.Client, tok: str, limit: int) -> tuple[int, int, float]:
    pages = rows = 0
    cursor = ""
    t0 = time.perf_counter()
    while True:
        body = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = c.post("/cgi-bin/user/list_id", params={"access_token": tok}, json=body).json()
        assert r["errcode"] == 0, r
        pages += 1
        rows += len(r["dept_user"])
        cursor = r["next_cursor"]
        if not cursor:
            break
    return pages, rows, time.perf_counter() - t0


def http_rate(url: str, paths: list[str]) -> float:
    """Sequential GETs on one keep-alive connection with the stdlib client (httpx's own per-request
    cost is larger than the emulator's, so it would measure the client)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    t0 = time.perf_counter()
    for path in paths:
        conn.request("GET", path)
        body = conn.getresponse().read()
        assert b'"errcode":0' in body, body[:200]
    conn.close()
    return len(paths) / (time.perf_counter() - t0)


def server_ms(c: httpx.Client, api: str) -> float:
    """Median server-side milliseconds per call of `api`, from the emulator's call log."""
    import statistics

    calls = c.get("/sim/calls", params={"api": api, "limit": 100000}).json()["calls"]
    return statistics.median(x["ms"] for x in calls) if calls else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--departments", type=int, default=10_000)
    p.add_argument("--user-get-calls", type=int, default=3000)
    args = p.parse_args(argv)
    from sim.config import DEFAULTS

    print(
        f"wqbot sim benchmark: {args.users:,} members / {args.departments:,} departments "
        f"({os.cpu_count()} CPUs; other work on this machine makes timings noisy)\n"
    )
    g = generation(args.users, args.departments)
    print("1. generation (fresh process)")
    print(f"   {'time':<28}{g['seconds']:>10.2f} s")
    print(
        f"   {'peak RSS':<28}{g['peak_kb'] / 1024:>10.0f} MB   (baseline before generating "
        f"{g['base_kb'] / 1024:.0f} MB; directory ≈ {(g['peak_kb'] - g['base_kb']) / 1024:.0f} MB, "
        f"{(g['peak_kb'] - g['base_kb']) * 1024 / max(1, g['users']):.0f} B/member)"
    )
    print(f"   {'memberships (list_id rows)':<28}{g['memberships']:>10,}\n")

    proc, url, startup = start_sim(args.users, args.departments)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            c.patch("/sim/quotas", json={"per_minute": 0, "per_hour": 0})
            contacts, app = token(c, DEFAULTS["WECOM_CONTACTS_SECRET"]), token(c, DEFAULTS["WECOM_APP_SECRET"])
            q = urlencode({"access_token": app})
            base_rate = http_rate(url, [f"/cgi-bin/getcallbackip?{q}"] * 2000)
            results = []
            for limit in (10_000, 1_000):
                page_through(c, contacts, limit)  # warm-up
                c.delete("/sim/calls")
                pages, rows, secs = page_through(c, contacts, limit)
                results.append((limit, pages, rows, secs, server_ms(c, "user/list_id")))
            userids = [u["userid"] for u in c.get("/sim/users", params={"limit": args.user_get_calls}).json()["users"]]
            c.delete("/sim/calls")
            rate = http_rate(url, [f"/cgi-bin/user/get?{q}&{urlencode({'userid': u})}" for u in userids])
            get_ms = server_ms(c, "user/get")
        print(f"2. user/list_id over loopback (`wqbot sim` process started in {startup:.1f} s)")
        print(
            f"   {'limit':>8} {'pages':>7} {'rows':>9} {'seconds':>8} {'pages/s':>9} {'rows/s':>11} {'ms/page':>8}"
            f" {'server ms':>10}"
        )
        for limit, pages, rows, secs, srv in results:
            print(
                f"   {limit:>8,} {pages:>7} {rows:>9,} {secs:>8.2f} {pages / secs:>9.1f} {rows / secs:>11,.0f} "
                f"{1000 * secs / pages:>8.1f} {srv:>10.1f}"
            )
        print(
            "   (ms/page: as the client sees it over loopback; server ms: median handler time incl. JSON, "
            "from the call log)"
        )
        print(
            f"   baseline, same server and run: a trivial call (getcallbackip) from one keep-alive client: "
            f"{base_rate:,.0f} calls/s ({1000 / base_rate:.2f} ms);\n   a 10,000-row page costs "
            f"{(results[0][3] / results[0][1]) * base_rate:.0f}× a trivial call\n"
        )
        print("3. user/get (quotas off), one keep-alive client")
        print(
            f"   {rate:,.0f} calls/s = {rate / base_rate:.2f}× the trivial call; handler median {get_ms:.2f} ms; "
            f"WeCom's quota is 10,000/min = 167/s, so {rate / 166.7:.0f}× headroom"
        )
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
