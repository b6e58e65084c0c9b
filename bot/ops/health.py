"""`GET /healthz`: 200 when the store and the queue answer, 503 otherwise.

`GET /readyz`: the same, and the directory must have been synced recently (within twice
SYNC_INTERVAL_MINUTES plus five minutes): an instance whose sync is stuck should not take
traffic that needs the directory. With WECOM_ENABLED=false sync is off and not required."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from bot.queue import huey
from settings import Settings
from store import clock, db

from .status import last_sync

log = logging.getLogger("wqbot.health")


def check_store() -> str | None:
    try:
        db.execute_sql("SELECT 1").fetchone()
        return None
    except Exception as e:
        return f"store unreachable ({type(e).__name__}): check DATABASE_URL"


def check_queue() -> str | None:
    try:
        storage = huey.storage
        if hasattr(storage, "conn") and hasattr(storage.conn, "ping"):
            storage.conn.ping()
        else:
            storage.queue_size()
        return None
    except Exception as e:
        return f"queue unreachable ({type(e).__name__}): check QUEUE_URL"


def sync_max_age(settings: Settings) -> float:
    return (2 * settings.sync_interval_minutes + 5) * 60


def check_sync(settings: Settings) -> tuple[str | None, str]:
    """(problem or None, a short description for the answer)."""
    if not settings.wecom_enabled:
        return None, "off (WECOM_ENABLED=false)"
    ok_at = last_sync()["last_ok_at"]
    if not ok_at:
        return "no directory sync has completed yet: run `wqbot sync` and see `wqbot doctor`", "never completed"
    age = clock.now() - ok_at
    limit = sync_max_age(settings)
    if age > limit:
        return (
            f"the last successful directory sync was {int(age // 60)} min ago (limit {int(limit // 60)}): "
            "is the worker running? see the admin console's recent errors"
        ), f"stale ({int(age)} s)"
    return None, f"ok ({int(age)} s ago)"


async def healthz(request: Request) -> JSONResponse:
    problems = [p for p in await run_in_threadpool(lambda: (check_store(), check_queue())) if p]
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    settings = request.app.state.settings

    def run():
        store, queue = check_store(), check_queue()
        sync_problem, sync_state = check_sync(settings) if store is None else (None, "unknown (store down)")
        return store, queue, sync_problem, sync_state

    store, queue, sync_problem, sync_state = await run_in_threadpool(run)
    problems = [p for p in (store, queue, sync_problem) if p]
    body: dict[str, Any] = {
        "status": "unavailable" if problems else "ok",
        "checks": {
            "store": "ok" if store is None else "down",
            "queue": "ok" if queue is None else "down",
            "sync": sync_state,
        },
    }
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=503 if problems else 200)
