"""`wqbot serve` with bench/profile.py's CPU-time sampler inside, for the loopback profile of
bench/callback.py (`--only profile`): SIGUSR1 starts sampling, SIGUSR2 stops it and writes the
samples per stage to $WQBOT_BENCH_SAMPLES (JSON). The embedded setup is one process (uvicorn runs
its one worker in it), so the samples cover everything a callback costs there: uvicorn and
httptools, the ASGI layers, the endpoint, the store, the consumer's threads.

    WQBOT_BENCH_SAMPLES=/tmp/s.json python -m bench.sampled_serve serve --port 8000
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from bench import target  # first: the project's modules come from the tree under test
from bench.profile import Sampler


def main() -> int:
    from bot.cli import main as wqbot

    sampler = Sampler(target.CODE_ROOT)
    out = Path(os.environ["WQBOT_BENCH_SAMPLES"])

    def start(signum: int, frame: object) -> None:
        sampler.counts.clear()
        sampler.where.clear()
        sampler.start()

    def stop(signum: int, frame: object) -> None:
        sampler.stop()
        tmp = out.with_suffix(".tmp")
        top = {stage: sampler.top(stage) for stage in sampler.counts}
        tmp.write_text(json.dumps({"counts": sampler.counts, "top": top}))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return wqbot(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
