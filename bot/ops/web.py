"""`GET /metrics`: Prometheus text exposition (every process's samples in multiprocess mode)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from bot.ops import metrics


async def metrics_endpoint(request: Request) -> Response:
    body = await run_in_threadpool(metrics.render)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
