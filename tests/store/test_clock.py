"""The one clock (`store.clock`), its pinning in tests, and the shifted-clock CI run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from store import clock as store_clock
from store.clock import CST, now, today_cst

SHIFT_DAYS = os.environ.get("WQBOT_TEST_CLOCK_DAYS")


def test_the_clock_fixture_pins_what_the_code_reads(clock, store):
    from store.models import Outbox

    clock.set(1_800_000_000.0)
    assert now() == 1_800_000_000.0
    row = Outbox.create(task="t", payload="{}")  # a stored timestamp comes from the same clock
    assert row.created_at == 1_800_000_000.0
    clock.advance(60)
    assert now() == 1_800_000_060.0


def test_today_is_the_day_in_china(clock):
    clock.set(1_764_000_000.0 - 1)  # 23:59:59 in China (15:59:59 UTC): pinned, the boundary is the point
    assert today_cst().isoformat() == "2025-11-24"
    clock.advance(1)
    assert today_cst().isoformat() == "2025-11-25"
    assert CST.utcoffset(None).total_seconds() == 8 * 3600


def test_unpinned_the_clock_is_the_wall_clock():
    assert store_clock._source is time.time
    assert abs(now() - time.time()) < 1


def test_the_shifted_run_really_shifts_every_process():
    """In `.ci/run`'s shifted run the wall clock of this process and of the processes tests start
    is WQBOT_TEST_CLOCK_DAYS ahead; otherwise nothing is moved."""
    import time_machine

    hatch = time_machine.escape_hatch
    real = hatch.time.time() if hatch.is_travelling() else time.time()
    child = float(
        subprocess.run(
            [sys.executable, "-c", "import time; print(time.time())"],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ,
        ).stdout
    )
    expected = float(SHIFT_DAYS or 0) * 86400
    assert abs((time.time() - real) - expected) < 60
    assert abs((child - real) - expected) < 60
