"""POST /api/v1/notifications and GET /api/v1/notifications/{id} (docs/api.md, "Notifications")."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.api.common import APIError, endpoint, json_body
from bot.notify import intake, status
from bot.notify.request import Invalid, parse
from bot.notify.status import describe
from settings import Settings


def _accept(req, fp):
    # One thread for the transaction and the enqueue after it: the outbox rows deferred in the
    # transaction are tracked in a context variable of this thread's context.

    n, created = intake.accept(req, fp)
    return status.describe(n.id), created


@endpoint
async def create_notification(request, settings: Settings):

    body = await json_body(request)
    try:
        req = parse(body)
    except Invalid as e:
        raise APIError(400, "invalid_field", f"{e.field}: {e.message}") from None
    info, _ = await run_in_threadpool(_accept, req, intake.fingerprint(body))
    return JSONResponse({"id": info["id"], "status": info["status"]}, status_code=202)


@endpoint
async def get_notification(request, settings: Settings):

    # POST trims surrounding white space off the id it stores, so the same id reads it back here.
    nid = request.path_params["id"].strip()
    if any(c < " " or c == "\x7f" for c in nid):  # never in an accepted id; PostgreSQL refuses NUL outright
        raise APIError(400, "invalid_id", "id must not contain control characters")
    info = await run_in_threadpool(describe, nid)
    if info is None:
        raise APIError(404, "not_found", f"no notification with id {nid!r}")
    return JSONResponse(info)


def routes(settings: Settings) -> list[Route]:
    return [
        Route("/api/v1/notifications", create_notification, methods=["POST"]),
        Route("/api/v1/notifications/{id:path}", get_notification, methods=["GET"]),
    ]
