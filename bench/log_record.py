"""What one "callback accepted" record costs, against a plain `log.info` of the same record, in
one run: CPU µs per record on the calling thread (the event loop's share) and in all threads
(the listener's LogRecord, redaction, JSON and write included).

    .venv/bin/python -m bench.log_record [--records 20000] [--rounds 3]

Logging is set up as `wqbot serve` sets it up (JSON, every configured secret redacted), into a
file. bench/README.md, "The per-callback INFO record", has the figures and the per-callback ratio
from bench/callback.py.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

from bench import target  # first: the project's modules come from the tree under test


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    from bot.callback import refusal
    from bot.callback.router import Inbound

    logs = target.logs()
    secrets = ("bench-app-secret", "T0kenForDocTests", "AvluMXaJSmrivhqi8EPrQGiww9Wp/2BN50/kzaCNN/Q")
    out = tempfile.TemporaryFile("w")
    logs.setup(fmt="json", secrets=secrets, stream=out)
    msg = Inbound({"MsgType": "event", "Event": "click", "EventKey": "help", "FromUserName": "lisi"})
    msg.trace_id = "0123456789abcdef"
    log = logging.getLogger("wqbot.callback")
    extra = {"endpoint": "app", "kind": "event:click", "userid": "lisi", "ms": 0.4, "trace_id": msg.trace_id}

    def accepted() -> None:
        refusal.accepted("app", msg, time.perf_counter())

    def plain() -> None:
        log.info("callback accepted", extra=extra)

    rows: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        for name, fn in (("log.info (queued, a wake-up per record)", plain), ("accepted() via log_later", accepted)):
            n = args.records
            logs.flush()
            t_all, t_caller = time.process_time(), time.thread_time()
            for _ in range(n):
                fn()
            caller = (time.thread_time() - t_caller) / n * 1e6
            logs.flush()
            total = (time.process_time() - t_all) / n * 1e6
            r = rows.setdefault(name, {"caller": [], "total": []})
            r["caller"].append(caller)
            r["total"].append(total)
    print(f"one log record, {args.records} per round, median of {args.rounds} rounds (CPU µs per record)\n")
    print("| path | calling thread | all threads |")
    print("|---|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {statistics.median(r['caller']):.1f} | {statistics.median(r['total']):.1f} |")


if __name__ == "__main__":
    main()
