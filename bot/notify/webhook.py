"""Signed webhooks to 微签 (docs/api.md, "The webhook"): `task.action` when a task is decided in chat,
`task.expired` when its deadline passed while it was still open.

    POST {WEIQIAN_WEBHOOK_URL}
    X-Wqbot-Event: task.action
    X-Wqbot-Delivery: <uuid, the same on every retry>
    X-Wqbot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>,v0=<hex HMAC(secret, raw body)>

The timestamp is signed with the body so a captured request cannot be replayed later: receivers
refuse a `t` more than SIGNATURE_TOLERANCE seconds away from their clock. `v0` is the previous,
body-only signature, kept for one release so receivers can move over (CHANGELOG.md).

Durability: `owe_action` writes the `WebhookDelivery` row (with the exact body bytes) and the
outbox row for the first attempt in the decision's own transaction. After that the delivery row
is the truth: each attempt leases it (conditional UPDATE), records a `WebhookAttempt`, and either
finishes it (2xx delivered; another 4xx, or 24 h of failures, failed) or sets `next_attempt_at`
with exponential backoff and schedules the next try in huey. `sweep()` (every minute) re-enqueues
deliveries whose scheduled try was lost with a worker. Receivers may still see a delivery twice
(a worker dying between the 2xx and recording it) and dedupe on X-Wqbot-Delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from datetime import datetime, timezone

import httpx

from bot.observability import metrics
from bot.queue import defer, enqueue, outbox_task
from settings import Settings, get_settings
from store import statements
from store.models import now
from store.notifications import WebhookAttempt, WebhookDelivery

log = logging.getLogger("wqbot.notify.webhook")

EVENT = "task.action"
EXPIRED = "task.expired"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
LEASE = 30.0  # longer than TIMEOUT: one attempt at a time per delivery
BACKOFF_BASE, BACKOFF_CAP = 5.0, 3600.0  # 5 s, 10 s, 20 s … then hourly
GIVE_UP_AFTER = 24 * 3600.0
RETRYABLE = {408, 429}  # and every 5xx, timeouts and connection errors
SWEEP_GRACE = 60.0  # a due delivery this late has lost its scheduled try

_http: httpx.Client | None = None


def http() -> httpx.Client:
    global _http
    if _http is None:
        _http = httpx.Client(timeout=TIMEOUT, follow_redirects=False, headers={"User-Agent": "wqbot"})
    return _http


SIGNATURE_TOLERANCE = 300  # seconds; what docs/api.md tells receivers to enforce


def _hex_hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Wqbot-Signature value for one attempt, signed at `timestamp` (Unix seconds)."""
    t = str(int(timestamp))
    return f"t={t},v1={_hex_hmac(secret, t.encode('ascii') + b'.' + body)},v0={_hex_hmac(secret, body)}"


def check_signature(
    secret: str, header: str, body: bytes, now: float, tolerance: float = SIGNATURE_TOLERANCE
) -> str | None:
    """What a receiver does with X-Wqbot-Signature: None when a `v1` matches and `t` is within
    `tolerance` seconds of `now`, else why not. wqbot's own 微签 stand-in (`wqbot sim`) uses it."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        return "no t=<unix seconds> in X-Wqbot-Signature"
    if abs(now - int(stamps[0])) > tolerance:
        return f"t={stamps[0]} is more than {tolerance:g} s from this receiver's clock"
    expected = _hex_hmac(secret, stamps[0].encode("ascii") + b"." + body)
    if not any(hmac.compare_digest(expected, v.encode("ascii", "replace").decode()) for v in parts.get("v1", [])):
        return "no v1= signature matches the body and WEIQIAN_WEBHOOK_SECRET"
    return None


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def owe_action(
    settings: Settings, *, notification_id: str, task_id: str, action: str, userid: str, account: str | None, at: float
) -> str | None:
    """Record that 微签 must hear about this decision. Call inside the decision's transaction."""
    fields: dict = {"action": action, "userid": userid}
    if account and account != userid:
        fields["account"] = account  # the 微签 account key the recipient was addressed by
    return owe(settings, EVENT, notification_id=notification_id, task_id=task_id, at=at, **fields)


def owe_expired(settings: Settings, *, notification_id: str, task_id: str, deadline: float, at: float) -> str | None:
    """`task.expired`: the deadline passed with the task still open. Call inside the expiry's
    transaction (its conditional UPDATE makes it once per task and round)."""
    return owe(settings, EXPIRED, notification_id=notification_id, task_id=task_id, at=at, deadline=iso(deadline))


def owe(settings: Settings, event: str, *, notification_id: str, task_id: str, at: float, **fields) -> str | None:
    """Write the delivery (its exact body) and the outbox row of its first attempt."""
    if not settings.weiqian_webhook_url:
        return None  # WEIQIAN_WEBHOOK_URL empty: events are only stored
    delivery = str(uuid.uuid4())
    payload = {
        "event": event,
        "delivery": delivery,
        "notification_id": notification_id,
        "task_id": task_id,
        **fields,
        "at": iso(at),
    }
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    statements.insert(
        WebhookDelivery,
        {
            "id": delivery,
            "event": event,
            "notification": notification_id,
            "task_id": task_id,
            "body": body,
            "created_at": at,
            "next_attempt_at": at,
        },
    )
    defer(deliver, delivery_id=delivery)
    return delivery


@outbox_task("notify.webhook")
def deliver(delivery_id: str) -> None:
    attempt(delivery_id, get_settings())


def backoff(attempts: int, retry_after: float | None = None) -> float:
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP))
    return delay


def _retry_after(r: httpx.Response) -> float | None:
    try:
        return float(r.headers.get("retry-after", ""))
    except ValueError:
        return None


def attempt(delivery_id: str, settings: Settings, clock=now, schedule: bool = True) -> str:
    """One try, if the delivery is due and nobody else is on it. Returns what happened:
    delivered | retry | failed | skipped."""
    t = clock()
    leased = (
        WebhookDelivery.update(lease_until=t + LEASE, attempts=WebhookDelivery.attempts + 1)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= t,
            WebhookDelivery.lease_until.is_null() | (WebhookDelivery.lease_until < t),
        )
        .execute()
    )
    if not leased:
        return "skipped"
    row = WebhookDelivery.get(WebhookDelivery.id == delivery_id)
    if not settings.weiqian_webhook_url:
        _finish(row, "failed", None, "WEIQIAN_WEBHOOK_URL is empty: set it to deliver actions to 微签", t)
        return "failed"
    body = row.body.encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "X-Wqbot-Event": row.event,
        "X-Wqbot-Delivery": row.id,
        "X-Wqbot-Signature": signature(settings.weiqian_webhook_secret, body, int(t)),
    }
    started = time.perf_counter()
    status, error, retry_after = None, None, None
    try:
        r = http().post(settings.weiqian_webhook_url, content=body, headers=headers)
        status = r.status_code
        retry_after = _retry_after(r)
    except httpx.TimeoutException:
        error = "timed out"
    except httpx.HTTPError as e:
        error = f"connection failed ({type(e).__name__})"
    WebhookAttempt.create(
        delivery=row.id,
        at=t,
        status_code=status,
        error=error,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    metrics.webhook_attempt(status, row.attempts)
    if status is not None and 200 <= status < 300:
        _finish(row, "delivered", status, None, clock())
        log.info("webhook delivered", extra={"delivery": row.id, "attempts": row.attempts})
        return "delivered"
    retryable = status is None or status >= 500 or status in RETRYABLE
    problem = error or f"HTTP {status} from WEIQIAN_WEBHOOK_URL"
    if not retryable:
        _finish(row, "failed", status, problem + " (final: not retried)", clock())
        log.error("webhook refused, not retried: %s", problem, extra={"delivery": row.id})
        return "failed"
    t = clock()
    deadline = row.created_at + GIVE_UP_AFTER
    if t >= deadline:
        _finish(row, "failed", status, problem + " (gave up after 24 h)", t)
        log.error("webhook given up after 24 h: %s", problem, extra={"delivery": row.id})
        return "failed"
    due = min(t + backoff(row.attempts, retry_after), deadline)
    WebhookDelivery.update(next_attempt_at=due, lease_until=None, last_status=status, last_error=problem).where(
        WebhookDelivery.id == row.id
    ).execute()
    log.warning("webhook failed, retrying in %.0f s: %s", due - t, problem, extra={"delivery": row.id})
    if schedule:
        enqueue(deliver, delay=max(0.0, due - t), delivery_id=row.id)
    return "retry"


def _finish(row: WebhookDelivery, status: str, code: int | None, error: str | None, at: float) -> None:
    WebhookDelivery.update(status=status, last_status=code, last_error=error, finished_at=at, lease_until=None).where(
        WebhookDelivery.id == row.id
    ).execute()


def overdue(at: float | None = None, limit: int = 500) -> list[str]:
    """Pending deliveries whose scheduled try should have happened a while ago."""
    t = at or now()
    q = (
        WebhookDelivery.select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at < t - SWEEP_GRACE,
            WebhookDelivery.lease_until.is_null() | (WebhookDelivery.lease_until < t),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return [r.id for r in q]
