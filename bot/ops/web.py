"""`GET /metrics`: Prometheus text exposition (every process's samples in multiprocess mode),
plus the queue depth, read from the queue and the outbox when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from bot.observability import metrics
from bot.ops.status import queue_depth


class QueueCollector:
    """Queue depth, read when scraped: huey's pending tasks, and outbox rows not yet done."""

    def collect(self) -> Iterator[object]:
        # prometheus_client is imported on first use (see bot.observability.metrics: the
        # multiprocess directory must be chosen before it is imported)
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "wqbot_queue_depth", "Work waiting: huey tasks, and outbox rows not yet done", labels=["queue"]
        )
        q = queue_depth()
        for name in ("huey", "scheduled", "outbox"):
            if q.get(name) is not None:
                depth.add_metric([name], q[name])
        yield depth
        if q.get("outbox_oldest_seconds") is not None:
            yield GaugeMetricFamily(
                "wqbot_outbox_oldest_seconds", "Age of the oldest outbox row", value=q["outbox_oldest_seconds"]
            )


async def metrics_endpoint(request: Request) -> Response:
    body = await run_in_threadpool(metrics.render, QueueCollector())
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
