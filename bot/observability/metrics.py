"""Prometheus metrics, and the tiny hooks the rest of wqbot calls to feed them.

    from bot.observability import metrics
    metrics.callback_done("app", "event:click", "ok", 0.004)

Every hook is cheap and never raises: without prometheus-client installed, or if a metric cannot
be recorded, it does nothing. The metric objects are built on first use, so importing this
module costs nothing and `prepare_multiprocess()` can still choose the storage before that.

Several processes (`wqbot serve --workers N`, a separate `wqbot worker`) share their numbers
through prometheus-client's multiprocess mode: every process that sets PROMETHEUS_MULTIPROC_DIR
(the same directory) writes its samples there, and `/metrics` sums them. Queue depth is not
kept by any process: it is read from the queue and the outbox when Prometheus scrapes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx

log = logging.getLogger("wqbot.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
_MAX_KINDS = 200  # label values that come from outside are capped, so a flood cannot blow up memory

_metrics: _Metrics | Literal[False] | None = None  # False: prometheus-client would not start
_lock = threading.Lock()
_kinds: set[str] = set()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def prepare_multiprocess(workers: int) -> str | None:
    """Before spawning `workers` web processes: make sure they share one metrics directory.

    Must run before anything records a metric (prometheus-client picks its storage on import)."""
    d = multiprocess_dir()
    if d is None and workers > 1:
        d = tempfile.mkdtemp(prefix="wqbot-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
    if d:
        os.makedirs(d, exist_ok=True)
    return d


class _Metrics:
    def __init__(self):
        from prometheus_client import Counter, Histogram

        self.callbacks = Counter(
            "wqbot_callbacks_total",
            "WeCom callbacks handled, by endpoint, message kind and outcome",
            ["endpoint", "kind", "outcome"],
        )
        self.callback_seconds = Histogram(
            "wqbot_callback_seconds", "Time to answer a WeCom callback", ["endpoint"], buckets=_FAST
        )
        self.api_calls = Counter(
            "wqbot_wecom_api_calls_total", "WeCom server API calls, by path and errcode", ["path", "errcode"]
        )
        self.api_seconds = Histogram(
            "wqbot_wecom_api_seconds",
            "WeCom server API call latency (one HTTP request)",
            ["path"],
            buckets=_FAST[3:] + (10.0, 30.0),
        )
        self.token_refreshes = Counter(
            "wqbot_wecom_token_refreshes_total", "access_token fetches (gettoken)", ["creds", "outcome"]
        )
        self.sync_runs = Counter(
            "wqbot_sync_runs_total", "Directory sync runs, by mode and outcome", ["mode", "outcome"]
        )
        self.sync_changes = Counter("wqbot_sync_changes_total", "Directory changes applied by sync runs", ["change"])
        self.sync_seconds = Histogram("wqbot_sync_seconds", "Directory sync run duration", ["mode"], buckets=_SLOW)
        self.pushes = Counter("wqbot_pushes_total", "Notification pushes per recipient, by status", ["status"])
        self.webhooks = Counter(
            "wqbot_webhook_deliveries_total", "Webhook delivery attempts to 微签, by outcome", ["outcome"]
        )
        self.webhook_retries = Counter("wqbot_webhook_retries_total", "Webhook delivery attempts after the first")
        self.followups = Counter(
            "wqbot_followups_total",
            "Follow-up work done: reminders and digests per member, tasks expired, tiles set, by kind and outcome",
            ["kind", "outcome"],
        )


def _get() -> _Metrics | None:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                try:
                    _metrics = _Metrics()
                except Exception as e:  # prometheus-client missing or a duplicate registration
                    log.warning("metrics disabled: %s", e)
                    _metrics = False
    return _metrics or None


_LABEL = re.compile(r"[^A-Za-z0-9_:./-]")


def _kind(value: str) -> str:
    value = _LABEL.sub("_", str(value or "unknown"))[:64]
    if value in _kinds:
        return value
    if len(_kinds) >= _MAX_KINDS:
        return "other"
    _kinds.add(value)
    return value


# -- hooks ------------------------------------------------------------------------------------------
# Every hook records through `_record`: a metric that cannot be recorded (prometheus-client
# missing, a bad label) is dropped, never raised into the caller's work.
def _record(fn: Callable[[_Metrics], object]) -> None:
    m = _get()
    if m is None:
        return
    try:
        fn(m)
    except Exception:
        pass


# (endpoint, kind, outcome) -> (the metrics they belong to, the counter's child, the histogram's child).
# prometheus-client's labels() validates and looks up its labels on every call, a good part of a
# callback's metrics cost (bench/README.md); the children themselves are stable.
_callback_children: dict[tuple[str, str, str], tuple[_Metrics, Any, Any]] = {}


def callback_done(endpoint: str, kind: str, outcome: str, seconds: float) -> None:
    """One callback answered. outcome: ok, duplicate, ignored, refused, bad_request, error…"""
    m = _get()
    if m is None:
        return
    try:
        key = (endpoint, kind, outcome)
        children = _callback_children.get(key)
        if children is None or children[0] is not m:
            if len(_callback_children) >= 4 * _MAX_KINDS:
                _callback_children.clear()
            children = (m, m.callbacks.labels(endpoint, _kind(kind), outcome), m.callback_seconds.labels(endpoint))
            _callback_children[key] = children
        children[1].inc()
        children[2].observe(seconds)
    except Exception:  # like _record: never raised into the caller's work
        pass


_OUTCOMES = {200: "ok", 403: "refused", 404: "off", 500: "error"}


def callback_status(endpoint: str, method: str, status: int, seconds: float, kind: str | None = None) -> None:
    """callback_done from what the endpoint answered: the outcome follows from the HTTP status."""
    if kind is None:
        kind = "url_verify" if method == "GET" else "message"
    outcome = _OUTCOMES.get(status, "bad_request" if 400 <= status < 500 else "error")
    callback_done(endpoint, kind, outcome, seconds)


def wecom_call(path: str, errcode: object, seconds: float) -> None:
    """One HTTP request to the WeCom API. errcode: WeCom's errcode, or "transport" / "http_NNN"."""

    def record(m: _Metrics) -> None:
        p = _kind(path)
        m.api_calls.labels(p, str(errcode)).inc()
        m.api_seconds.labels(p).observe(seconds)

    _record(record)


def token_refresh(creds: str, ok: bool = True) -> None:
    _record(lambda m: m.token_refreshes.labels(creds, "ok" if ok else "failed").inc())


def sync_run(mode: str, outcome: str, changes: dict[str, int] | None = None, seconds: float | None = None) -> None:
    """One directory sync finished. changes: {"user.created": 3, "department.deleted": 1, …}."""

    def record(m: _Metrics) -> None:
        m.sync_runs.labels(_kind(mode), _kind(outcome)).inc()
        for change, n in (changes or {}).items():
            if n:
                m.sync_changes.labels(_kind(change)).inc(n)
        if seconds is not None:
            m.sync_seconds.labels(_kind(mode)).observe(seconds)

    _record(record)


def push(status: str, count: int = 1) -> None:
    """Notification recipients reached a status (sent, invalid, failed…)."""
    if count:
        _record(lambda m: m.pushes.labels(_kind(status)).inc(count))


def pushes(counts: dict[str, int]) -> None:
    """A notification's push finished: {recipient status: count}."""
    for status, n in (counts or {}).items():
        push(status, n)


def followup(kind: str, outcome: str = "sent", count: int = 1) -> None:
    """kind: reminder | digest | expired | tile; outcome: sent, invalid, failed, refused…"""
    if count:
        _record(lambda m: m.followups.labels(_kind(kind), _kind(outcome)).inc(count))


def webhook_attempt(status_code: int | None, attempt: int = 1) -> None:
    """One webhook POST answered with `status_code` (None: no answer: timeout, refused)."""
    if status_code is None:
        outcome = "no_answer"
    elif 200 <= status_code < 300:
        outcome = "delivered"
    else:
        outcome = f"http_{status_code // 100}xx"
    webhook_delivery(outcome, attempt)


def webhook_delivery(outcome: str, attempt: int = 1) -> None:
    """One POST to WEIQIAN_WEBHOOK_URL. outcome: delivered, retrying, failed. attempt counts from 1."""

    def record(m: _Metrics) -> None:
        m.webhooks.labels(_kind(outcome)).inc()
        if attempt > 1:
            m.webhook_retries.inc()

    _record(record)


class WeComTransport(httpx.BaseTransport):
    """An httpx transport that times each request to the WeCom API and counts it by path and
    errcode (or "transport" / "http_NNN"). Wraps the real transport, so tests' respx mocks and
    the client's own retries work unchanged: every attempt is one observation."""

    def __init__(self, inner=None):
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request):
        started = time.perf_counter()
        path = request.url.path
        try:
            response = self.inner.handle_request(request)
        except Exception:
            wecom_call(path, "transport", time.perf_counter() - started)
            raise
        try:
            response.read()
            code = _errcode(response)
        except Exception:
            code = "transport"
        wecom_call(path, code, time.perf_counter() - started)
        return response

    def close(self):
        self.inner.close()

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        self.inner.__exit__(*exc)


def _errcode(response) -> str:
    if response.status_code != 200:
        return f"http_{response.status_code}"
    try:
        data = json.loads(response.content)
        return str(int(data.get("errcode", 0) or 0)) if isinstance(data, dict) else "not_json"
    except (ValueError, TypeError):
        return "not_json"


def wecom_transport(**kwargs):
    """The transport for the WeCom client's httpx.Client (kwargs go to httpx.HTTPTransport)."""
    try:
        return WeComTransport(httpx.HTTPTransport(**kwargs))
    except Exception:  # never let metrics stop the client from being built
        return httpx.HTTPTransport(**kwargs)


# -- exposition ------------------------------------------------------------------------------------
def render(*collectors: object) -> bytes:
    """The exposition text for GET /metrics: every process's samples in multiprocess mode, plus
    `collectors` read at scrape time (the queue depth: bot/ops/web.py)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    _get()  # make sure the families exist even before anything was recorded
    registry: CollectorRegistry | _LocalRegistry = CollectorRegistry()
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry = _LocalRegistry(REGISTRY, registry)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


class _LocalRegistry:
    """This process's registry plus the scrape-time collectors, without touching the global one."""

    def __init__(self, *registries):
        self.registries = registries

    def register(self, collector):
        self.registries[-1].register(collector)

    def collect(self):
        for r in self.registries:
            yield from r.collect()
