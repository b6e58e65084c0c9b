"""`wqbot serve` and `wqbot worker`: the processes of a deployment.

- embedded: one `wqbot serve` (SQLite store, huey on SQLite) runs the web app and, on threads in
  the same process, the queue consumer and its periodic jobs.
- scaled out: `wqbot serve --workers N --no-worker` (web processes) and M `wqbot worker`s, on
  PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sys

import uvicorn
from huey.consumer import Consumer
from starlette.types import ASGIApp

from bot.app import build, create_app
from bot.observability import logs
from bot.observability.metrics import prepare_multiprocess
from bot.queue import huey
from settings import Settings, get_settings
from store import init_store

from . import HEADER_PROTOCOL, stack


def start_consumer(settings: Settings, workers: int = 2) -> Consumer:
    """Run the huey consumer on threads inside this process (embedded deployment)."""
    build(settings)  # the queue tasks and periodic jobs, registered with huey
    # The embedded (SQLite) queue is polled, and huey's idle backoff grows to 10 s by default:
    # a card tap's updates and webhook would wait that long. Poll at most every 0.1 s instead.
    consumer = huey.create_consumer(
        workers=workers, worker_type="thread", periodic=True, check_worker_health=True, max_delay=0.1
    )
    consumer.start()
    return consumer


def _available(module: str) -> str:
    """uvicorn's fast HTTP parser / event loop when installed (uvicorn[standard]), else its default."""
    return module if importlib.util.find_spec(module) else "auto"


def asgi_app() -> ASGIApp:
    """uvicorn's app factory, run in every web process: the app behind `stack()`, with the heap
    frozen.

    gc.freeze() moves the long-lived objects of the imported modules out of the cyclic collector's
    sight. Under load a full collection otherwise scanned them every few seconds and held every
    request in that process meanwhile: most of the p99 (bench/README.md)."""
    app = stack(create_app())
    gc.collect()
    gc.freeze()
    return app


def serve(args: argparse.Namespace) -> int:
    s = get_settings()
    init_store(s.database_url)  # migrate once here, before workers fork
    if args.workers > 1 and s.queue_is_embedded:
        print("wqbot: --workers > 1 needs QUEUE_URL=redis://… (the embedded queue is one process)", file=sys.stderr)
        return 2
    prepare_multiprocess(args.workers)  # several processes: /metrics sums them (PROMETHEUS_MULTIPROC_DIR)
    consumer = None
    if s.queue_is_embedded and not args.no_worker:
        consumer = start_consumer(s)
    print(
        f"wqbot: serving on http://{args.host}:{args.port}  (callback URL: {s.public_url}/wecom/callback)",
        file=sys.stderr,
    )
    if not s.wecom_configured:
        print(
            f"wqbot: setup mode: WeCom is not configured yet; fill 企业微信参数 at {s.public_url}/admin/wecom",
            file=sys.stderr,
        )
    try:
        uvicorn.run(
            "bot.server.commands:asgi_app",
            factory=True,
            # httptools with a time limit on request headers; without httptools, uvicorn's
            # default, which has none.
            http=HEADER_PROTOCOL if _available("httptools") != "auto" else "auto",
            loop=_available("uvloop"),
            host=args.host,
            port=args.port,
            workers=args.workers,
            proxy_headers=args.proxy_headers,
            forwarded_allow_ips=args.forwarded_allow_ips,
            log_level="warning",
            access_log=False,
            log_config=logs.uvicorn_log_config(),  # uvicorn's own lines: same format, same redaction
        )
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)
    return 0


def worker(args: argparse.Namespace) -> int:
    s = get_settings()
    init_store(s.database_url)
    build(s)  # the queue tasks and periodic jobs, registered with huey
    consumer = huey.create_consumer(workers=args.workers, worker_type="thread", periodic=True)
    print(f"wqbot: worker consuming {s.queue_url.split('@')[-1]}", file=sys.stderr)
    consumer.run()
    return 0
