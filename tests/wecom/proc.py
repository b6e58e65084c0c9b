"""A separate OS process for the cross-process tests: its own settings, client and threads.

    python -m tests.wecom.proc tokens THREADS     # THREADS concurrent agent_get() calls via client_for
    python -m tests.wecom.proc rate KEY PER_MIN N  # N non-blocking acquisitions from the Redis limiter

It prints "ready", waits for a line on stdin (so both processes start together), then prints one
JSON line with its results. Settings come from the environment (the test passes its own).
"""

from __future__ import annotations

import json
import sys
import threading


def tokens(threads: int) -> dict:
    from bot.wecom import client_for
    from settings import load

    client = client_for(load(dotenv=None))
    gate = threading.Barrier(threads)
    results, errors = [], []

    def call():
        gate.wait()
        try:
            results.append(client.agent_get()["agentid"])
        except Exception as e:  # reported to the test, which fails on any
            errors.append(f"{type(e).__name__}: {e}")

    ready_and_wait()
    workers = [threading.Thread(target=call) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"ok": len(results), "errors": errors}


def rate(key: str, per_min: int, n: int) -> dict:
    import os

    import redis

    from bot.wecom._ratelimit import Limits, RedisRateLimiter

    r = redis.Redis.from_url(os.environ["QUEUE_URL"])
    limiter = RedisRateLimiter(r, os.environ["WQBOT_QUEUE_NAME"], Limits(per_min=per_min, per_hour=10**6))
    ready_and_wait()
    granted = sum(1 for _ in range(n) if limiter.acquire(key, 0.0) == 0.0)
    return {"granted": granted}


def ready_and_wait() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    out = tokens(int(args[0])) if kind == "tokens" else rate(args[0], int(args[1]), int(args[2]))
    print(json.dumps(out), flush=True)
