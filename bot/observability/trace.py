"""Trace ids: one per callback or API request, carried into every queued task it causes.

A callback gets one (`new_trace_id()`); the queue stores it on each outbox row the delivery
defers and binds it again while the task runs, so one id follows a delivery from the HTTP request
into the WeCom calls and the webhook it leads to. Every log record carries it as `trace_id`.
"""

from __future__ import annotations

import os
from contextvars import ContextVar, Token

_trace: ContextVar[str | None] = ContextVar("wqbot_trace_id", default=None)


def new_trace_id() -> str:
    """Start a trace for this request or delivery: returns the id and makes it current."""
    tid = os.urandom(8).hex()  # 16 hex characters, a fifth of uuid4()'s cost
    _trace.set(tid)
    return tid


def current_trace_id() -> str | None:
    return _trace.get()


def bind_trace(trace_id: str | None) -> Token[str | None]:
    """Make `trace_id` current (a queued task resuming its delivery's trace); returns a reset token."""
    return _trace.set(trace_id)


def unbind_trace(token: Token[str | None]) -> None:
    try:
        _trace.reset(token)
    except (ValueError, RuntimeError):  # set in another context (a thread pool hop): just clear
        _trace.set(None)
