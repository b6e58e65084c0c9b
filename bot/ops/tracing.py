"""Queue-side operations hooks: a task resumes the trace id of the delivery that deferred it,
failures are remembered for the admin console, and old error rows are pruned."""

from __future__ import annotations

import logging

from huey import crontab
from huey.signals import SIGNAL_ERROR

from bot import logs
from bot.tasks import huey

log = logging.getLogger("wqbot.ops")


def _outbox_trace(task) -> str | None:
    from bot.tasks import _registry
    from store.models import Outbox

    args = getattr(task, "args", None) or ()
    if task.name not in _registry or not args or not isinstance(args[0], int):
        return None
    return Outbox.select(Outbox.trace_id).where(Outbox.id == args[0]).scalar()


@huey.pre_execute(name="wqbot.resume_trace")
def resume_trace(task) -> None:
    try:
        trace = _outbox_trace(task)
    except Exception:
        trace = None
    task._wqbot_trace_token = logs.bind_trace(trace or str(task.id).replace("-", "")[:16])


@huey.post_execute(name="wqbot.end_trace")
def end_trace(task, value, exc) -> None:
    token = getattr(task, "_wqbot_trace_token", None)
    if token is not None:
        task._wqbot_trace_token = None
        logs.unbind_trace(token)


@huey.signal(SIGNAL_ERROR)
def remember_failure(signal, task, exc=None) -> None:
    from bot.ops.status import record_error

    if exc is None:
        return
    hint = getattr(exc, "hint", "") or ""
    record_error(task.name, f"{type(exc).__name__}: {exc}", hint)


@huey.periodic_task(crontab(hour="3", minute="17"), name="wqbot.ops.prune_errors")
def prune_errors() -> int:
    from bot.ops.status import prune_errors as prune

    return prune()
