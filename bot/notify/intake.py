"""Accepting a notification from 微签: stored with its idempotency id and its push queued, in one
transaction, before the API answers 202. The same id again changes nothing and sends nothing."""

from __future__ import annotations

import hashlib
import json
import logging

import peewee

from bot import queue
from store import db
from store.models import now
from store.notifications import Notification, NotificationStatus

from . import decisions
from .push import push
from .request import NotificationRequest

log = logging.getLogger("wqbot.notify")


def fingerprint(raw: dict) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def accept(req: NotificationRequest, fp: str = "") -> tuple[Notification, bool]:
    """(the notification, True if this call created it). Commits, then hands the push to huey."""
    existing = Notification.get_or_none(Notification.id == req.id)
    if existing is None:
        try:
            with db.atomic():
                created = _create(req, fp)
        except peewee.IntegrityError:
            queue.discard_pending()
            existing = Notification.get_or_none(Notification.id == req.id)  # a concurrent twin won
            if existing is None:
                raise
        except BaseException:
            queue.discard_pending()
            raise
        else:
            queue.enqueue_outbox()
            return created, True
    if fp and existing.fingerprint != fp:
        log.warning(
            "notification id reused with a different body; answering with the first", extra={"notification": req.id}
        )
    return existing, False


def _create(req: NotificationRequest, fp: str) -> Notification:
    t = now()
    body = json.dumps(req.to_dict(), ensure_ascii=False)
    if req.type == "close":
        n = Notification.create(
            id=req.id,
            kind="close",
            task_id=req.task_id,
            body=body,
            fingerprint=fp,
            status=NotificationStatus.DONE,
            created_at=t,
            sent_at=t,
        )
        decisions.close(req.task_id, req.result)
        return n
    # the row first: a duplicate id fails here, before anything else is written
    n = Notification.create(
        id=req.id,
        kind=req.type,
        task_id=req.task_id,
        body=body,
        fingerprint=fp,
        status=NotificationStatus.QUEUED,
        created_at=t,
    )
    if req.type in ("approve", "sign"):
        n.round = decisions.open_task(req)
        Notification.update(round=n.round).where(Notification.id == n.id).execute()
    queue.defer(push, notification_id=req.id)
    return n
