"""`wqbot serve` and `wqbot worker`: the processes of a deployment.

- embedded: one `wqbot serve` (SQLite store, huey on SQLite) runs the web app in N processes
  (`--workers`, one per core by default) sharing one WAL database and one queue file and, on
  threads in the supervising process, the one queue consumer and its periodic jobs.
- scaled out: `wqbot serve --workers N --no-worker` (web processes) and M `wqbot worker`s, on
  PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
import socket
import sys

import uvicorn
from huey.consumer import Consumer
from starlette.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from bot.app import build, create_app
from bot.observability import logs
from bot.observability.metrics import prepare_multiprocess
from bot.queue import huey
from settings import Settings, get_settings
from store import init_store

from . import HEADER_PROTOCOL, connections, stack
from .selfcheck import claim_consumer, selfcheck

log = logging.getLogger("wqbot.server")

# Web processes of `wqbot serve` on SQLite when --workers is not given; 0: one per core.
EMBEDDED_WEB_PROCESSES = 0


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


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says "serving on" (uvicorn gets it ready-made)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)  # the worker processes of --workers N accept on it too
    return sock


def web_processes(args: argparse.Namespace, s: Settings) -> int:
    """--workers, or by default: every core on the embedded setup (SQLite store and queue),
    one process otherwise (scaled out, the deployment chooses)."""
    if args.workers is not None:
        return max(1, args.workers)
    if s.queue_url.startswith("sqlite:///") and s.database_url.startswith("sqlite:///"):
        return EMBEDDED_WEB_PROCESSES or os.cpu_count() or 1
    return 1


def serve(args: argparse.Namespace) -> int:
    s = get_settings()
    init_store(s.database_url)  # migrate once here, before workers fork
    workers = web_processes(args, s)
    if workers > 1 and s.queue_url.startswith("memory://"):
        print(
            "wqbot: --workers > 1 needs a queue the processes share: QUEUE_URL=sqlite:///… or redis://…",
            file=sys.stderr,
        )
        return 2
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        print(
            f"wqbot serve: cannot listen on {args.host}:{args.port} ({e.strerror}): stop what holds that port "
            "(another wqbot serve?) or pick another --port",
            file=sys.stderr,
        )
        return 2
    selfcheck(s, "serve")  # at most a few seconds: WeCom is asked with a deadline
    prepare_multiprocess(workers)  # several processes: /metrics sums them (PROMETHEUS_MULTIPROC_DIR)
    consumer = lock = None
    if s.queue_is_embedded and not args.no_worker:
        # The web processes only enqueue; this process (uvicorn's supervisor when there are
        # several) consumes the queue and runs the periodic jobs, while it holds the queue's lock.
        lock, holder = claim_consumer(s, "serve")
        if holder:
            log.warning(
                "a `wqbot worker` (%s) already consumes the embedded queue %s: this serve runs no consumer; "
                "with QUEUE_URL=sqlite:/// run either serve alone or serve --no-worker plus one worker",
                holder,
                s.queue_url,
            )
        else:
            consumer = start_consumer(s)
    config = uvicorn.Config(
        "bot.server.commands:asgi_app",
        factory=True,
        # httptools with a time limit on request headers; without httptools, uvicorn's
        # default, which has none.
        http=HEADER_PROTOCOL if _available("httptools") != "auto" else "auto",
        loop=_available("uvloop"),
        workers=workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_level="warning",
        access_log=False,
        log_config=logs.uvicorn_log_config(),  # uvicorn's own lines: same format, same redaction
    )
    before, files = connections.raise_file_limit()  # the worker processes inherit it
    limits = connections.limits_for(files)
    print(
        f"wqbot: open-file limit {files}" + (f" (raised from {before})" if files != before else "") + "; "
        f"at most {limits.total} connections per process, {limits.per_client} per client (docs/security.md)",
        file=sys.stderr,
    )
    if not s.wecom_configured:
        print(
            f"wqbot: setup mode: WeCom is not configured yet; fill 企业微信参数 at {s.public_url}/admin/wecom",
            file=sys.stderr,
        )
    host, port = sock.getsockname()[:2]
    print(
        f"wqbot: serving on http://{host}:{port}  (callback URL: {s.public_url}/wecom/callback)",
        file=sys.stderr,
        flush=True,
    )
    started = True
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server = uvicorn.Server(config)
            server.run(sockets=[sock])
            started = server.started
    except KeyboardInterrupt:
        pass
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)
        if lock is not None:
            lock.close()
        sock.close()
    if not started:
        print("wqbot serve: the app did not start; the log above says why", file=sys.stderr)
        return 1
    return 0


def worker(args: argparse.Namespace) -> int:
    s = get_settings()
    init_store(s.database_url)
    build(s)  # the queue tasks and periodic jobs, registered with huey
    lock, holder = claim_consumer(s, "worker")
    if holder:
        # An embedded queue has exactly one consumer: a second scheduler would start the periodic
        # jobs again, and huey's SQLite storage is built for one reader.
        log.warning(
            "the embedded queue %s is already consumed by %s (`wqbot serve` runs its own worker): this worker "
            "does not start. Stop it, or run `wqbot serve --no-worker`, or move to QUEUE_URL=redis://… to scale out",
            s.queue_url,
            holder,
        )
        return 2
    selfcheck(s, "worker")
    consumer = huey.create_consumer(workers=args.workers, worker_type="thread", periodic=True)
    print(f"wqbot: worker consuming {s.queue_url.split('@')[-1]}", file=sys.stderr)
    try:
        consumer.run()
    finally:
        if lock is not None:
            lock.close()
    return 0
