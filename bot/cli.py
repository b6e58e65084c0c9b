"""`wqbot`: the one console script (CONTRACT §5)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from settings import SettingsError

# command -> "module:function"; each function takes the parsed args and returns an exit code.
COMMANDS = {
    "serve": "bot.cli:serve",
    "worker": "bot.cli:worker",
    "sync": "bot.sync.cli:main",
    "menu": "bot.menus.cli:main",
    "doctor": "bot.ops.doctor:main",
    "sim": "sim.cli:main",
    "demo": "sim.demo:main",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wqbot", description="WeCom (企业微信) integration for 微签")
    p.add_argument("--log-format", choices=("json", "text"), default=None)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="web app under uvicorn (+ worker and periodic sync when the queue is embedded)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (needs QUEUE_URL=redis://)")
    s.add_argument("--no-worker", action="store_true", help="do not run the queue consumer in this process")
    s.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from --forwarded-allow-ips")
    s.add_argument("--forwarded-allow-ips", default="127.0.0.1")

    w = sub.add_parser("worker", help="a queue consumer only")
    w.add_argument("--workers", type=int, default=4, help="worker threads")

    y = sub.add_parser("sync", help="one directory sync now")
    y.add_argument("--full", action="store_true")
    y.add_argument("--force", action="store_true", help="apply disables even past SYNC_MAX_DELETE_RATIO")

    m = sub.add_parser("menu", help="the app menu")
    m.add_argument("action", choices=("show", "push", "diff"))

    sub.add_parser("doctor", help="check settings and the WeCom side, and say what to fix")

    sim = sub.add_parser("sim", help="the local WeCom emulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8900)
    sim.add_argument("--users", type=int, default=200)
    sim.add_argument("--departments", type=int, default=20)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--callback-url", default="")
    sim.add_argument("--contacts-callback-url", default="")
    sim.add_argument("--token-expires-in", type=int, default=None, help="access token lifetime in seconds (7200)")
    sim.add_argument(
        "--hide-private", action="store_true", help="omit mobile/email/… as for apps made after 2022-06-20"
    )
    sim.add_argument("--contacts-new-ip", action="store_true", help="通讯录同步 detail reads answer 48009 (2022-08-15)")
    sim.add_argument("--ids-only-callbacks", action="store_true", help="change_contact carries IDs only (post-2022)")
    sim.add_argument(
        "--redirect-domain", default="", help="the app's OAuth 可信域名 host[:port] (default: PUBLIC_URL's)"
    )

    d = sub.add_parser("demo", help="everything end to end against the emulator")
    d.add_argument("--keep", action="store_true", help="leave both running for a person to click through")
    return p


def _settings():
    from settings import get_settings

    return get_settings()


def _setup_logging(args) -> None:
    from bot import logs

    try:
        s = _settings()
        fmt = args.log_format or s.log_format
        secrets = s.secret_values
    except SettingsError:
        fmt, secrets = args.log_format or "text", ()
    logs.setup(fmt=fmt, secrets=secrets)


def start_consumer(workers: int = 2):
    """Run the huey consumer on threads inside this process (embedded deployment)."""
    from bot.tasks import huey, load_task_modules

    load_task_modules()
    # The embedded (SQLite) queue is polled, and huey's idle backoff grows to 10 s by default:
    # a card tap's updates and webhook would wait that long. Poll at most every 0.1 s instead.
    consumer = huey.create_consumer(
        workers=workers, worker_type="thread", periodic=True, check_worker_health=True, max_delay=0.1
    )
    consumer.start()
    return consumer


def _available(module: str) -> str:
    """uvicorn's fast HTTP parser / event loop when installed (uvicorn[standard]), else its default."""
    import importlib.util

    return module if importlib.util.find_spec(module) else "auto"


def asgi_app():
    """uvicorn's app factory, run in every web process: `bot.asgi:app` behind the callback fast
    path (bot.callbacks.CallbackFastPath), both behind the request body time limit
    (bot.body_timeout: uvicorn has none), with the heap frozen.

    gc.freeze() moves the ~60,000 long-lived objects of the imported modules out of the cyclic
    collector's sight. Under load a full collection otherwise scanned them every few seconds and
    held every request in that process for up to ~35 ms: most of the p99 (bench/callback.py)."""
    import gc

    from bot.asgi import app
    from bot.body_timeout import BodyTimeout
    from bot.callbacks import CallbackFastPath

    gc.collect()
    gc.freeze()
    return BodyTimeout(CallbackFastPath(app))


def serve(args) -> int:
    import uvicorn

    s = _settings()
    from store import init_store

    init_store(s.database_url)  # migrate once here, before workers fork
    if args.workers > 1 and s.queue_is_embedded:
        print("wqbot: --workers > 1 needs QUEUE_URL=redis://… (the embedded queue is one process)", file=sys.stderr)
        return 2
    from bot import logs
    from bot.ops.metrics import prepare_multiprocess

    prepare_multiprocess(args.workers)  # several processes: /metrics sums them (PROMETHEUS_MULTIPROC_DIR)
    consumer = None
    if s.queue_is_embedded and not args.no_worker:
        consumer = start_consumer()
    print(
        f"wqbot: serving on http://{args.host}:{args.port}  (callback URL: {s.public_url}/wecom/callback)",
        file=sys.stderr,
    )
    try:
        uvicorn.run(
            "bot.cli:asgi_app",
            factory=True,
            # httptools with a time limit on request headers (bot.header_timeout); without
            # httptools, uvicorn's default, which has none.
            http="bot.header_timeout:HeaderTimeoutProtocol" if _available("httptools") != "auto" else "auto",
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


def worker(args) -> int:
    s = _settings()
    from store import init_store

    init_store(s.database_url)
    from bot.tasks import huey, load_task_modules

    load_task_modules()
    consumer = huey.create_consumer(workers=args.workers, worker_type="thread", periodic=True)
    print(f"wqbot: worker consuming {s.queue_url.split('@')[-1]}", file=sys.stderr)
    consumer.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    target = COMMANDS[args.command]
    module, _, func = target.partition(":")
    try:
        try:
            fn = getattr(importlib.import_module(module), func)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                print(f"wqbot {args.command}: not available in this build", file=sys.stderr)
                return 2
            raise
        return int(fn(args) or 0)
    except SettingsError as e:
        print(f"wqbot: setting {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
