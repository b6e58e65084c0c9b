"""待我处理: a member's open tasks (the data contract the chat menu reads)."""

from __future__ import annotations

from typing import TypedDict

from store.models import now
from store.notifications import NotifyRecipient, NotifyTask, RecipientStatus, TaskState


def open_tasks(userid: str, at: float):
    mine = (
        NotifyRecipient.select(NotifyRecipient.task_id)
        .join(NotifyTask, on=(NotifyRecipient.task_id == NotifyTask.task_id))
        .where(
            NotifyRecipient.userid == userid,
            NotifyRecipient.status != RecipientStatus.INVALID,
            NotifyRecipient.round == NotifyTask.round,
        )
    )
    return NotifyTask.select().where(
        NotifyTask.task_id.in_(mine),
        NotifyTask.state == TaskState.PENDING,
        NotifyTask.kind.in_(("approve", "sign")),
        NotifyTask.deadline.is_null() | (NotifyTask.deadline > at),
    )


class PendingTask(TypedDict):
    task_id: str
    type: str  # approve | sign
    title: str
    description: str | None
    url: str | None  # the 微签 H5 path
    created_at: float  # epoch seconds
    initiator: str | None  # as 微签 sent it
    deadline: float | None  # epoch seconds


def pending_tasks(userid: str, limit: int) -> tuple[list[PendingTask], int]:
    """`userid`'s open tasks — approve tasks still undecided, sign tasks not yet done, deadline
    not passed — newest first, at most `limit`, and how many there are in all.

    Each item: task_id, type (approve|sign), title, description, url (the 微签 H5 path or None),
    created_at (epoch seconds), initiator (as 微签 sent it, or None), deadline (epoch or None)."""
    q = open_tasks(userid, now())
    total = q.count()
    if limit <= 0 or total == 0:
        return [], total
    rows = q.order_by(NotifyTask.created_at.desc(), NotifyTask.task_id).limit(limit)
    return [
        PendingTask(
            task_id=t.task_id,
            type=t.kind,
            title=t.title,
            description=t.description,
            url=t.url,
            created_at=t.created_at,
            initiator=t.initiator,
            deadline=t.deadline,
        )
        for t in rows
    ], total
