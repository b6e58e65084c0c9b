"""Notifications and webhook deliveries as the console shows them (store/notifications.py)."""

from __future__ import annotations

import json

from store.notifications import Notification, NotificationStatus, NotifyRecipient, RecipientStatus, WebhookDelivery

NOTIFICATION_STATUS: dict[str, str] = {
    NotificationStatus.QUEUED: "排队中",
    NotificationStatus.SENDING: "发送中",
    NotificationStatus.SENT: "已发送",
    NotificationStatus.PARTIAL: "部分发送",
    NotificationStatus.FAILED: "发送失败",
    NotificationStatus.DONE: "已结束",
}
RECIPIENT_STATUS: dict[str, str] = {
    RecipientStatus.QUEUED: "排队中",
    RecipientStatus.SENT: "已送达",
    RecipientStatus.INVALID: "无效接收人",
    RecipientStatus.FAILED: "失败",
}
WEBHOOK_STATUS = {"pending": "待投递", "delivered": "已投递", "failed": "投递失败"}


def _title(body: str) -> str:
    try:
        return str(json.loads(body).get("title") or "")
    except (ValueError, AttributeError):
        return ""


def notifications(limit: int = 50) -> dict:
    rows = list(Notification.select().order_by(Notification.created_at.desc()).limit(limit))
    ids = [n.id for n in rows]
    recipients: dict[str, list] = {}
    if ids:
        for r in NotifyRecipient.select().where(NotifyRecipient.notification.in_(ids)).order_by(NotifyRecipient.id):
            recipients.setdefault(r.notification, []).append(
                {
                    "userid": r.userid,
                    "status": r.status,
                    "status_text": RECIPIENT_STATUS.get(r.status, r.status),
                    "error": r.reason or "",
                }
            )
    items = []
    for n in rows:
        rs = recipients.get(n.id, [])
        items.append(
            {
                "id": n.id,
                "type": n.kind,
                "task_id": n.task_id or "",
                "title": _title(n.body),
                "status": n.status,
                "status_text": NOTIFICATION_STATUS.get(n.status, n.status),
                "created_at": n.created_at,
                "error": n.error or "",
                "recipients": rs,
                # what bot.notify.resend takes: failed (or invalid) recipients of a notification at rest
                "can_resend": n.kind != "close"
                and n.status in (NotificationStatus.FAILED, NotificationStatus.PARTIAL)
                and any(r["status"] in (RecipientStatus.FAILED, RecipientStatus.INVALID) for r in rs),
            }
        )
    return {"items": items}


def webhooks(limit: int = 50) -> dict:
    items = []
    for w in WebhookDelivery.select().order_by(WebhookDelivery.created_at.desc()).limit(limit):
        items.append(
            {
                "id": w.id,
                "event": w.event,
                "notification_id": w.notification or "",
                "task_id": w.task_id or "",
                "status": w.status,
                "status_text": WEBHOOK_STATUS.get(w.status, w.status),
                "attempts": w.attempts,
                "created_at": w.created_at,
                "last_error": w.last_error or (f"HTTP {w.last_status}" if w.last_status else ""),
                "can_retry": w.status == "failed",
            }
        )
    return {"items": items}
