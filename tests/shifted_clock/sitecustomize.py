"""Moves the wall clock of every Python process that starts with this folder on PYTHONPATH:
the test run itself and the `wqbot serve` / `wqbot sim` processes it starts.

    WQBOT_TEST_CLOCK_DAYS=400 PYTHONPATH=tests/shifted_clock python -m pytest -m "not slow"

`.ci/run` runs the suite this way once, so a test that hard-codes a date fails the day it is
written rather than the day that date passes. time-machine moves `time.time()` and `datetime.now()`
and lets them tick; monotonic clocks and sleeping are untouched (libfaketime 0.9.10 breaks both
under Python 3.11: `Event.wait` hangs, or `time.sleep` fails with EINVAL).
"""

import os

_days = os.environ.get("WQBOT_TEST_CLOCK_DAYS")
if _days:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_days) * 86400, tick=True).start()
