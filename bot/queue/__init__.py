"""The queue: one huey instance, and the outbox that makes queued work survive a killed process.

    from bot.queue import defer, outbox_task

    @outbox_task("notify.push")
    def push(notification_id: str) -> None: ...

    with write_transaction():
        ...                                   # the effect
        defer(push, notification_id=n.id)     # promised in the same transaction
    enqueue_outbox()                          # handed to huey after the commit

See `_outbox` for the guarantees. `contribute()` gives the registry the queue's own upkeep: the
outbox sweeper and the pruning of old delivery keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._huey import huey, make_huey
from ._outbox import (
    STALE_AFTER,
    OutboxTask,
    PeriodicJob,
    defer,
    discard_pending,
    enqueue,
    enqueue_outbox,
    enqueue_rows,
    outbox_task,
    periodic_job,
    prune_deliveries,
    register_periodic,
    register_task,
    subscribe,
    sweep_outbox,
    take_pending,
)

if TYPE_CHECKING:
    from bot.registry import Registry

__all__ = [
    "STALE_AFTER",
    "OutboxTask",
    "PeriodicJob",
    "contribute",
    "defer",
    "discard_pending",
    "enqueue",
    "enqueue_outbox",
    "enqueue_rows",
    "huey",
    "make_huey",
    "outbox_task",
    "periodic_job",
    "prune_deliveries",
    "register_periodic",
    "register_task",
    "subscribe",
    "sweep_outbox",
    "take_pending",
]


def contribute(app: Registry) -> None:
    app.periodic(sweep_outbox, prune_deliveries)
