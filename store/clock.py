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

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

CST = timezone(timedelta(hours=8), "CST")  # China Standard Time, no daylight saving

_source: Callable[[], float] = time.time


def now() -> float:
    return _source()


def today_cst() -> date:
    return datetime.fromtimestamp(now(), CST).date()


class FollowedClock:
    """Wall time plus the emulator's offset (`SIM_CLOCK_URL`, development only): when the demo or
    a test jumps `/sim/clock`, reminders, expiry and the digest in every wqbot process see the
    jump within `every` seconds. The offset only moves forward; if the emulator is unreachable the
    last one is kept."""

    def __init__(self, url: str, every: float = 0.5, on_jump: Callable[[], object] | None = None):
        self.url, self.every, self.offset, self.on_jump = url, every, 0.0, on_jump
        self._poll()
        threading.Thread(target=self._loop, name="wqbot-sim-clock", daemon=True).start()

    def __call__(self) -> float:
        return time.time() + self.offset

    def _poll(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as r:
                self.offset = max(self.offset, float(json.load(r)["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            logging.getLogger("wqbot.clock").debug("SIM_CLOCK_URL unreachable; keeping offset %s", self.offset)

    def _loop(self) -> None:
        while True:
            time.sleep(self.every)
            before = self.offset
            self._poll()
            if self.offset > before + 1 and self.on_jump is not None:
                try:
                    self.on_jump()  # e.g. run the clock's jobs now instead of at the next minute
                except Exception:
                    logging.getLogger("wqbot.clock").exception("after a jump of the emulator's clock")


def follow(url: str, on_jump: Callable[[], object] | None = None) -> None:
    """Read the time as the emulator at `url` (its /sim/clock) says, from now on in this process;
    `on_jump` runs (on the polling thread) whenever that clock jumps forward."""
    global _source
    if not isinstance(_source, FollowedClock) or _source.url != url:
        _source = FollowedClock(url, on_jump=on_jump)
