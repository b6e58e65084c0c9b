"""The WeCom API client's own overhead per call, against a local no-op WeCom, in one run.

    .venv/bin/python bench/api_client.py [--calls 4000] [--concurrency 100] [--rounds 3]

A uvicorn process on 127.0.0.1 answers every path with {"errcode":0} at once (gettoken with a
token). In this process, each round measures, in turn:

  bare-sync    httpx.Client.get(...).json() on N threads (same timeout and pool limits as ours)
  ours         WeComClient.agent_get() on N threads: token from the in-process cache, the
               in-process rate limiter, errcode check (the embedded setup)
  ours-redis   the same with the deployment's shared parts on Redis (QUEUE_URL=redis://…):
               token memo in front of Redis, the Redis rate limiter (batched)
  bare-async   httpx.AsyncClient.get(...).json() with N concurrent coroutines (the usual async
               baseline; a different concurrency model, shown for reference)

The client is synchronous (huey worker threads, the CLI), so the like-for-like ratio is
ours / bare-sync. Per-call time is wall time / calls (throughput at that concurrency); the median of
the rounds is reported. Also: a single sequential call (ours vs bare) and the limiter's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANSWER = json.dumps({"errcode": 0, "errmsg": "ok", "agentid": 1000002, "name": "bench"}).encode()
ERRORS: dict[str, int] = {}  # sporadic transport errors under load (e.g. a reused socket reset)
TOKEN = json.dumps({"errcode": 0, "errmsg": "ok", "access_token": "BENCH-TOKEN", "expires_in": 7200}).encode()


async def noop_wecom(scope, receive, send):
    """The no-op WeCom: raw ASGI, no framework, so the server costs as little as possible."""
    if scope["type"] != "http":
        return
    body = TOKEN if scope["path"] == "/cgi-bin/gettoken" else ANSWER
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.api_client:noop_wecom",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            # keep idle pooled connections open between phases (no reset on reuse)
            "--timeout-keep-alive",
            "600",
            "--backlog",
            "4096",
        ],
        cwd=ROOT,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("the no-op server did not start")


def bench_settings(base: str, queue_url: str = "memory://"):
    from settings import load

    return load(
        env={
            "WECOM_CORP_ID": "wwbench0001",
            "WECOM_AGENT_ID": "1000002",
            "WECOM_APP_SECRET": "bench-secret",
            "WECOM_TOKEN": "benchtoken",
            "WECOM_AES_KEY": "AvluMXaJSmrivhqi8EPrQGiww9Wp/2BN50/kzaCNN/Q",
            "SECRET_KEY": "bench",
            "WEIQIAN_API_TOKEN": "bench",
            "WECOM_API_BASE": base,
            "DATABASE_URL": "sqlite:///:memory:",
            "QUEUE_URL": queue_url,
        },
        dotenv=None,
    )


def on_threads(fn, calls: int, concurrency: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) per call: `calls` calls of fn() over `concurrency` threads."""
    per = calls // concurrency
    gate = threading.Barrier(concurrency + 1)
    errors = []

    def work():
        gate.wait()
        for _ in range(per):
            try:
                fn()
            except Exception as e:  # counted, not fatal: see ERRORS in the report
                errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for t in threads:
        t.start()
    gate.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if len(errors) > calls // 100:
        raise errors[0]
    for e in errors:
        ERRORS[type(e).__name__] = ERRORS.get(type(e).__name__, 0) + 1
    return elapsed / (per * concurrency), cpu / (per * concurrency)


def on_coroutines(url: str, params: dict, calls: int, concurrency: int, limits, timeout) -> tuple[float, float]:
    import httpx

    per = calls // concurrency

    async def main():
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

            async def work():
                for _ in range(per):
                    (await client.get(url, params=params)).json()

            await asyncio.gather(*(work() for _ in range(5)))  # warm the pool
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(work() for _ in range(concurrency)))
            return time.perf_counter() - t0, time.process_time() - c0

    wall, cpu = asyncio.run(main())
    return wall / (per * concurrency), cpu / (per * concurrency)


def sequential(fns, blocks: int = 40, per_block: int = 25) -> list[float]:
    """Seconds per single call of each fn, one at a time; blocks interleaved so drift hits all alike."""
    for fn in fns:
        for _ in range(20):
            fn()
    times = [[] for _ in fns]
    for _ in range(blocks):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(per_block):
                fn()
            times[i].append((time.perf_counter() - t0) / per_block)
    return [statistics.median(t) for t in times]


def limiter_cost(limiter, n: int = 20000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        limiter.acquire("bench:/cgi-bin/agent/get", 30.0)
    return (time.perf_counter() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis", default=os.environ.get("WQBOT_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()

    import httpx

    from bot.wecom import WeComClient
    from bot.wecom._client import LIMITS, TIMEOUT, namespace
    from bot.wecom._ratelimit import Limits, LocalRateLimiter, RedisRateLimiter
    from bot.wecom._tokens import LocalTokenStore, RedisBackend

    os.environ["WQBOT_QUEUE_NAME"] = f"wqbot-bench-{os.getpid()}"
    port = free_port()
    server = start_server(port)
    base = f"http://127.0.0.1:{port}"
    url, params = f"{base}/cgi-bin/agent/get", {"agentid": 1000002, "access_token": "BENCH-TOKEN"}
    # No limiter refusals in a benchmark: it measures the limiter's cost, not its limits.
    big = Limits(per_min=10**9, per_hour=10**10)
    try:
        bare = httpx.Client(timeout=TIMEOUT, limits=LIMITS, headers={"User-Agent": "wqbot"})
        ours = WeComClient(bench_settings(base), limiter=LocalRateLimiter(big))
        variants = {
            "bare-sync": lambda: bare.get(url, params=params).json(),
            "ours": ours.agent_get,
        }
        redis_tokens = None
        try:
            import redis

            r = redis.Redis.from_url(args.redis, socket_timeout=2, socket_connect_timeout=1)
            r.ping()
            redis_tokens = LocalTokenStore(RedisBackend(r, namespace()))
            redis_limiter = RedisRateLimiter(r, namespace(), big)
            ours_redis = WeComClient(bench_settings(base, args.redis), tokens=redis_tokens, limiter=redis_limiter)
            variants["ours-redis"] = ours_redis.agent_get
        except Exception as e:  # Redis is optional here
            print(f"(ours-redis skipped: {type(e).__name__})")
        for fn in variants.values():  # warm up: pools, token, imports
            on_threads(fn, args.concurrency * 2, args.concurrency)

        results: dict[str, list[tuple[float, float]]] = {k: [] for k in [*variants, "bare-async"]}
        names = [*variants, "bare-async"]
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no variant always goes first
                if name == "bare-async":
                    results[name].append(on_coroutines(url, params, args.calls, args.concurrency, LIMITS, TIMEOUT))
                else:
                    results[name].append(on_threads(variants[name], args.calls, args.concurrency))
            print(
                f"round {r + 1}: " + ", ".join(f"{k} {v[-1][0] * 1e6:.0f} µs" for k, v in results.items()), flush=True
            )
        seq_bare, seq_ours = sequential([lambda: bare.get(url, params=params).json(), ours.agent_get])
        local_cost = limiter_cost(LocalRateLimiter(big))
        redis_cost = limiter_cost(redis_limiter) if redis_tokens is not None else None
    finally:
        server.terminate()
        server.wait(10)
        if redis_tokens is not None:
            redis_tokens.clear()
            redis_limiter.reset()

    wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
    print(
        f"\nper call, {args.concurrency} concurrent, {args.calls} calls, median of {args.rounds} rounds "
        f"({os.cpu_count()} CPUs, shared with whatever else runs; load average {os.getloadavg()[0]:.1f}):"
    )
    print(f"  {'':<11} {'wall':>8} {'client CPU':>11}")
    for k in wall:
        print(f"  {k:<11} {wall[k] * 1e6:6.0f} µs {cpu[k] * 1e6:8.0f} µs")
    print("\nratios (wall; client CPU):")
    for a, b, note in (
        ("ours", "bare-sync", "target ≤ 1.5×"),
        ("ours-redis", "bare-sync", ""),
        ("ours", "bare-async", "threads vs coroutines"),
        ("bare-sync", "bare-async", ""),
    ):
        if a in wall:
            print(f"  {a + ' / ' + b:<24} {wall[a] / wall[b]:.2f}×; {cpu[a] / cpu[b]:.2f}×   {note}")
    print(
        f"\nsequential single call: ours {seq_ours * 1e6:.0f} µs, bare {seq_bare * 1e6:.0f} µs "
        f"({seq_ours / seq_bare:.2f}×)"
    )
    if ERRORS:
        print(f"transport errors tolerated (≤1 % of a phase): {ERRORS}")
    print(
        f"rate limiter acquire: in-process {local_cost * 1e6:.2f} µs"
        + (f", Redis (batched) {redis_cost * 1e6:.2f} µs" if redis_cost is not None else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
