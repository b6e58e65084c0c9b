"""What the capabilities contribute to one wqbot process, collected when it is built.

    app = Registry(settings)
    sync.contribute(app)        # each capability adds its own part
    notify.contribute(app)
    ...

Each capability package exposes `contribute(app: Registry) -> None` and adds its HTTP routes,
its callback handlers, its queue tasks and periodic jobs, and its queue signal receivers. Nothing
registers itself when a module is imported: a module can be imported (by a test, by `wqbot menu`)
without wiring anything, and bot/app.py reads as the list of capabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.routing import BaseRoute, Route

from bot import queue
from bot.callback.router import Router
from settings import Settings


class Registry:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.routes: list[BaseRoute] = []
        self.app_callbacks = Router()  # /wecom/callback (接收消息)
        self.contacts_callbacks = Router()  # /wecom/contacts/callback (通讯录同步); /wecom/callback too
        self.task_names: list[str] = []
        self.periodic_jobs: list[queue.PeriodicJob] = []

    def route(self, path: str, endpoint: Callable[..., Any], methods: Sequence[str] = ("GET",)) -> None:
        self.routes.append(Route(path, endpoint, methods=list(methods)))

    def tasks(self, *tasks: queue.OutboxTask) -> None:
        """Outbox tasks this capability defers: huey in this process can run them."""
        for task in tasks:
            queue.register_task(task)
            self.task_names.append(task.name)

    def periodic(self, *jobs: queue.PeriodicJob) -> None:
        """Jobs the consumer's scheduler starts (in the process that runs the consumer)."""
        for job in jobs:
            queue.register_periodic(job)
            self.task_names.append(job.name)
            self.periodic_jobs.append(job)

    def on_queue_signal(self, signal: str, receiver: Callable[..., Any]) -> None:
        """Subscribe to huey's signals (SIGNAL_ERROR, …): metrics, error records."""
        queue.subscribe(signal, receiver)
