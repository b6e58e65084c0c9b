"""Operations: /readyz, /metrics, the admin console (/admin), `wqbot doctor`, queue hooks.

Other modules feed metrics through `bot.ops.metrics` (tiny hooks that never raise)."""
from __future__ import annotations

from bot.ops import jobs, tracing  # noqa: F401  (registers queue hooks and tasks wherever tasks are loaded)


def routes(settings) -> list:
    from starlette.routing import Route

    from bot.health import readyz
    from bot.ops.admin import admin_routes
    from bot.ops.web import metrics_endpoint

    return [
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *admin_routes(settings),
    ]
