"""Observability: logs, trace ids and metrics. A leaf: it imports nothing from wqbot's
capabilities, and they call it (or, for the queue, subscribe it to huey's signals at build time).

- `logs`     the log setup: JSON or text, secrets redacted, written by a listener thread so the
             event loop never formats or writes a record; `LogThrottle` for warnings that can
             repeat per request.
- `trace`    trace ids that follow a delivery from its HTTP request into every task it causes.
- `metrics`  Prometheus hooks (`metrics.callback_done(...)`, …) that are cheap and never raise,
             and the exposition for `GET /metrics`.
"""
