"""Operations: /healthz, /readyz, /metrics, the admin console (/admin), `wqbot doctor`, and the
queue side of operations (errors remembered for the console, the console's 立即同步)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from huey.signals import SIGNAL_ERROR

from . import console_settings, jobs
from .admin import admin_routes
from .health import healthz, readyz
from .web import metrics_endpoint

if TYPE_CHECKING:
    from bot.registry import Registry


def contribute(app: Registry) -> None:
    console_settings.install()  # LiveSettings (wqbot serve, worker) follow /admin/wecom from now on
    app.route("/healthz", healthz)
    app.route("/readyz", readyz)
    app.route("/metrics", metrics_endpoint)
    app.routes.extend(admin_routes(app.settings))
    app.tasks(jobs.sync_now)
    app.periodic(jobs.prune_errors)
    app.on_queue_signal(SIGNAL_ERROR, jobs.remember_failure)
