"""Operations: /readyz, /metrics, the admin console (/admin), `wqbot doctor`, queue hooks.

Other modules feed metrics through `bot.ops.metrics` (tiny hooks that never raise)."""

from __future__ import annotations

# No imports with side effects here: the WeCom client imports bot.ops.metrics in processes that
# have no queue (wqbot menu, doctor). Queue hooks and jobs live in bot.ops.tasks.


def routes(settings) -> list:
    from starlette.routing import Route

    from bot.health import readyz
    from bot.ops import tasks  # noqa: F401  (the console enqueues its jobs from this process)
    from bot.ops.admin import admin_routes
    from bot.ops.web import metrics_endpoint

    return [
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *admin_routes(settings),
    ]
