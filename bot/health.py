"""`GET /healthz`: 200 when the store and the queue answer, 503 otherwise."""
from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("wqbot.health")


def check_store() -> str | None:
    from store import db

    try:
        db.execute_sql("SELECT 1").fetchone()
        return None
    except Exception as e:
        return f"store unreachable ({type(e).__name__}): check DATABASE_URL"


def check_queue() -> str | None:
    from bot.tasks import huey

    try:
        storage = huey.storage
        if hasattr(storage, "conn") and hasattr(storage.conn, "ping"):
            storage.conn.ping()
        else:
            storage.queue_size()
        return None
    except Exception as e:
        return f"queue unreachable ({type(e).__name__}): check QUEUE_URL"


async def healthz(request: Request) -> JSONResponse:
    problems = [p for p in (check_store(), check_queue()) if p]
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})
