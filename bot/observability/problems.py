"""Configuration problems for the console's 最近错误: what a push, a sync or a callback saw that
only an operator can fix, with its hint (the setting or console page to change).

    from bot.observability import problems
    problems.report("sync", str(error), error.hint)

Kept here, below every capability, so the directory sync, the notifications and the callback
endpoint can all report without importing the console. Never raises; secrets are redacted before
anything is stored. `report_soon` is for the event loop: the write happens on a thread.
"""

from __future__ import annotations

import asyncio
import logging

from store.ops import remember_error

from .logs import redact
from .trace import current_trace_id

log = logging.getLogger("wqbot.ops")


def report(source: str, message: str, hint: str = "", trace_id: str | None = None) -> None:
    try:
        remember_error(
            source, redact(str(message))[:2000], redact(str(hint or ""))[:1000], trace_id or current_trace_id()
        )
    except Exception as e:  # the error log must never cause an error of its own
        log.debug("could not record error: %s", e)


def summary(error: BaseException) -> str:
    """A WeCom error as the same text every time it recurs: path and errcode, without WeCom's
    errmsg (which carries a fresh request id per call), so 最近错误 counts repeats on one row."""
    code, path = getattr(error, "errcode", None), getattr(error, "path", "")
    if code is None:
        return f"{type(error).__name__}: {str(error)[:200]}"
    return f"{path or 'WeCom'}: errcode {code}"


def report_soon(source: str, message: str, hint: str = "") -> None:
    """`report` off the calling thread when it is an event loop's (a store write is I/O)."""
    trace_id = current_trace_id()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        report(source, message, hint, trace_id)
        return
    loop.run_in_executor(None, report, source, message, hint, trace_id)
