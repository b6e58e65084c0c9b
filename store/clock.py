"""The one clock wqbot reads for anything it stores or decides by date: row timestamps,
deadlines, expiry of states, tickets and sessions, the sync interval, the day a greeting counts for.

    from store.clock import now, today_cst
    now()        # Unix seconds (float)
    today_cst()  # the calendar day in China, where 微签's users are

Tests pin it with the `clock` fixture (tests/conftest.py) instead of patching `time.time` in each
module. Measuring durations (timeouts, rate limits, latencies) is not its job: those read
`time.monotonic` / `time.perf_counter` where they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

CST = timezone(timedelta(hours=8), "CST")  # China Standard Time, no daylight saving

_source: Callable[[], float] = time.time


def now() -> float:
    return _source()


def today_cst() -> date:
    return datetime.fromtimestamp(now(), CST).date()
