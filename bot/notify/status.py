"""GET /api/v1/notifications/{id}: what happened to a notification (docs/api.md, "Notifications")."""

from __future__ import annotations

from store.notifications import (
    Notification,
    NotificationStatus,
    NotifyRecipient,
    NotifyTask,
    RecipientStatus,
    TaskState,
)

from .content import request_of
from .webhook import iso


def status_of(n: Notification, task: NotifyTask | None) -> str:
    """queued | sent | partial | failed | done (the task it belongs to is over)."""
    if n.kind == "close":
        return NotificationStatus.DONE
    if n.kind in ("approve", "sign") and task is not None and (task.round > n.round or task.state != TaskState.PENDING):
        return NotificationStatus.DONE
    return NotificationStatus.QUEUED if n.status == NotificationStatus.SENDING else n.status


def describe(notification_id: str) -> dict | None:
    n = Notification.get_or_none(Notification.id == notification_id)
    if n is None:
        return None
    task = NotifyTask.get_or_none(NotifyTask.task_id == n.task_id) if n.task_id and n.kind != "notice" else None
    rows = list(
        NotifyRecipient.select(
            NotifyRecipient.userid, NotifyRecipient.key, NotifyRecipient.status, NotifyRecipient.reason
        )
        .where(NotifyRecipient.notification == n.id)
        .order_by(NotifyRecipient.id)
    )
    if rows:
        recipients = []
        for r in rows:
            item = {"userid": r.userid, "status": r.status}
            if r.key != r.userid:
                item["account"] = r.key
            if r.reason and r.status != RecipientStatus.SENT:
                item["reason"] = r.reason
            recipients.append(item)
    elif n.kind == "close":  # sends nothing: the cards of its task are updated
        recipients = []
    else:  # not pushed yet
        recipients = [{"userid": k, "status": RecipientStatus.QUEUED} for k in request_of(n).get("recipients") or []]
    action = None
    if task is not None and task.round == n.round and task.state_via == "chat" and task.decided_action:
        action = {"action": task.decided_action, "userid": task.decided_by, "at": iso(task.decided_at)}
    out = {
        "id": n.id,
        "type": n.kind,
        "status": status_of(n, task),
        "task_id": n.task_id,
        "recipients": recipients,
        "action": action,
    }
    if task is not None:
        out["task_state"] = task.state if task.round == n.round else "superseded"
    if n.error and out["status"] in (NotificationStatus.PARTIAL, NotificationStatus.FAILED, NotificationStatus.HELD):
        out["error"] = n.error
    return out
