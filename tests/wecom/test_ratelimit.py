"""The client-side rate limiter: bucket arithmetic, window ceilings, holds, Redis sharing."""

from __future__ import annotations

import logging
import os
from collections import deque

import pytest

from bot.wecom._ratelimit import Limits, LocalRateLimiter, RedisRateLimiter
from tests.conftest import REDIS_URL, TEST_ENV

from .conftest import redis_or_skip
from .test_tokens import run_together, spawn


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_defaults_sit_under_wecoms_quotas():
    limits = Limits()
    (minute_rate, minute_burst), (hour_rate, hour_burst) = limits.buckets()
    assert minute_burst + minute_rate * 60 <= 8000 < 10000
    assert hour_burst + hour_rate * 3600 <= 120000 < 150000
    assert minute_burst == 1000 and hour_burst == 20000


def test_settings_choose_the_limits():
    from settings import SettingsError, load

    s = load(env={**TEST_ENV, "WECOM_RATE_LIMIT_PER_MIN": "600", "WECOM_RATE_LIMIT_PER_HOUR": "9000"}, dotenv=None)
    assert Limits.from_settings(s) == Limits(600, 9000)
    assert Limits.from_settings(load(env=dict(TEST_ENV), dotenv=None)) == Limits(8000, 120000)
    with pytest.raises(SettingsError) as e:
        load(env={**TEST_ENV, "WECOM_RATE_LIMIT_PER_MIN": "0"}, dotenv=None)
    assert e.value.variable == "WECOM_RATE_LIMIT_PER_MIN"


def test_bucket_arithmetic():
    clock = Clock()
    lim = LocalRateLimiter(Limits(per_min=80, per_hour=10**6), clock=clock)
    step = 60 / 70  # 80/min ceiling: burst 10, refill 70/min
    assert [lim.acquire("k", 0) for _ in range(10)] == [0.0] * 10
    assert lim.acquire("k", 0) is None  # empty, and a refusal takes nothing
    assert lim.acquire("k", 5) == pytest.approx(step)  # a reservation: wait one refill
    assert lim.acquire("k", 5) == pytest.approx(2 * step)  # queued behind it
    assert lim.acquire("k", 1.0) is None  # would wait 3 steps > 1 s
    clock.now += 2 * step
    assert lim.acquire("k", 0) is None and lim.acquire("k", 5) == pytest.approx(step)
    assert lim.acquire("other", 0) == 0.0  # buckets are per key (API path and corp)
    clock.now += 3600
    assert [lim.acquire("k", 0) for _ in range(10)] == [0.0] * 10  # refilled to the burst, no more
    assert lim.acquire("k", 0) is None


def greedy(limits, seconds, tick, window):
    """A caller that takes every token it can: the most calls any rolling window ever sees."""
    clock = Clock()
    lim = LocalRateLimiter(limits, clock=clock)
    times, most = deque(), 0
    start = clock.now
    while clock.now - start < seconds:
        while lim.acquire("k", 0) == 0.0:
            times.append(clock.now)
        while times and times[0] <= clock.now - window:
            times.popleft()
        most = max(most, len(times))
        clock.now += tick
    return most


def test_no_rolling_minute_exceeds_the_ceiling():
    assert 70 <= greedy(Limits(per_min=80, per_hour=10**6), 600, 0.05, 60) <= 80


def test_no_rolling_hour_exceeds_the_ceiling():
    assert 550 <= greedy(Limits(per_min=10**6, per_hour=600), 3 * 3600, 5, 3600) <= 600


def test_block_holds_every_caller_back():
    clock = Clock()
    lim = LocalRateLimiter(Limits(), clock=clock)
    lim.block("k", 15)
    assert lim.acquire("k", 30) == pytest.approx(15)
    assert lim.acquire("k", 10) is None
    assert lim.acquire("other", 0) == 0.0
    clock.now += 15
    assert lim.acquire("k", 0) == 0.0


# -- Redis ----------------------------------------------------------------------------------------------
@pytest.fixture
def redis_limiter(namespace):
    r = redis_or_skip()
    return lambda limits, **kw: RedisRateLimiter(r, namespace, limits, **kw)


def test_redis_bucket_arithmetic(redis_limiter):
    lim = redis_limiter(Limits(per_min=80, per_hour=10**6))
    assert lim.batch == 1
    assert [lim.acquire("k", 0) for _ in range(10)] == [0.0] * 10
    assert lim.acquire("k", 0) is None
    wait = lim.acquire("k", 5)
    assert 0.8 <= wait <= 60 / 70 + 0.01


def test_redis_limiter_is_shared_and_so_is_a_hold(redis_limiter):
    a = redis_limiter(Limits(per_min=80, per_hour=10**6))
    b = redis_limiter(Limits(per_min=80, per_hour=10**6))
    granted = sum(1 for i in range(20) if (a if i % 2 else b).acquire("k", 0) == 0.0)
    assert granted == 10
    a.block("held", 20)
    assert 19 <= b.acquire("held", 30) <= 20


def test_redis_limiter_takes_small_batches_and_spends_them_locally(redis_limiter, namespace):
    r = redis_or_skip()
    lim = redis_limiter(Limits())
    assert lim.batch == 15
    assert all(lim.acquire("k", 0) == 0.0 for _ in range(20))
    tokens = float(r.hget(f"{namespace}:wecom:rate:k", "t1"))
    assert 1000 - 30 <= tokens <= 1000 - 30 + 3  # two batches of 15 taken (plus a little refill)


def test_two_processes_share_one_bucket(namespace):
    redis_or_skip()
    env = {**os.environ, **TEST_ENV, "QUEUE_URL": REDIS_URL, "WQBOT_QUEUE_NAME": namespace}
    outs = run_together(
        [
            spawn(["rate", "corp:/cgi-bin/user/get", "80", "30"], env),
            spawn(["rate", "corp:/cgi-bin/user/get", "80", "30"], env),
        ]
    )
    total = sum(o["granted"] for o in outs)
    assert 10 <= total <= 11, outs  # one burst of 10 between both (each alone would get 10)


def test_redis_down_falls_back_to_the_process_and_logs_once(caplog):
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    lim = RedisRateLimiter(dead, "nowhere", Limits(per_min=80, per_hour=10**6))
    caplog.set_level(logging.INFO, logger="wqbot.wecom")
    assert [lim.acquire("k", 0) for _ in range(10)] == [0.0] * 10
    assert lim.acquire("k", 0) is None  # still limited, per process
    assert len([r for r in caplog.records if "rate limiter unavailable" in r.getMessage()]) == 1
