"""待我处理: a member's open tasks (the data contract the chat menu reads)."""

from __future__ import annotations

from functools import lru_cache
from typing import TypedDict

from store import db
from store.db import is_postgres
from store.models import now
from store.notifications import NotifyRecipient, NotifyTask, RecipientStatus, TaskState

_COLUMNS = ("task_id", "kind", "title", "description", "url", "created_at", "initiator", "deadline")


@lru_cache(maxsize=4)
def _open_tasks_sql(postgres: bool) -> str:
    """The member's open tasks, newest first, each with how many there are in all.

    The query starts from the member's own recipient rows (the (userid, task_id) index) and looks
    each task up by its key. Written as `IN (subquery)` it was planned from `state = 'pending'`
    instead, testing every open task in the store: its cost grew with the store, not the member
    (bench/README.md). SQLite's CROSS JOIN fixes that join order, and `state || ''` keeps either
    planner off the state index (PostgreSQL without fresh statistics picked it too: 31 ms for 3,500
    open tasks against 0.3 ms by key). GROUP BY keeps a task once when the member was sent it twice in one round, and
    COUNT(*) OVER () gives the total in the same statement."""
    p = "%s" if postgres else "?"
    r, t = NotifyRecipient._meta.table_name, NotifyTask._meta.table_name
    cols = ", ".join(f't."{c}"' for c in _COLUMNS)
    return (
        f'SELECT {cols}, COUNT(*) OVER () FROM "{r}" AS r CROSS JOIN "{t}" AS t '
        f'WHERE r."userid" = {p} AND r."status" != {p} AND t."task_id" = r."task_id" AND t."round" = r."round" '
        f'AND t."state" || \'\' = {p} AND t."kind" IN ({p}, {p}) AND (t."deadline" IS NULL OR t."deadline" > {p}) '
        f'GROUP BY t."task_id" ORDER BY t."created_at" DESC, t."task_id" LIMIT {p}'
    )


@lru_cache(maxsize=4)
def _open_counts_sql(postgres: bool) -> str:
    """The member's open tasks counted by kind, planned from the member's recipient rows like
    `_open_tasks_sql` (the 工作台 tile reads this every time a member's tasks change)."""
    p = "%s" if postgres else "?"
    r, t = NotifyRecipient._meta.table_name, NotifyTask._meta.table_name
    return (
        f'SELECT t."kind", COUNT(DISTINCT t."task_id") FROM "{r}" AS r CROSS JOIN "{t}" AS t '
        f'WHERE r."userid" = {p} AND r."status" != {p} AND t."task_id" = r."task_id" AND t."round" = r."round" '
        f'AND t."state" = {p} AND t."kind" IN ({p}, {p}) AND (t."deadline" IS NULL OR t."deadline" > {p}) '
        f'GROUP BY t."kind"'
    )


def open_counts(userid: str, at: float | None = None) -> dict[str, int]:
    """{"approve": N, "sign": M}: how many open tasks of each kind `userid` has (the 待我处理 rule)."""
    database = db.obj
    params = (userid, RecipientStatus.INVALID.value, TaskState.PENDING.value, "approve", "sign", at or now())
    counts = dict(database.execute_sql(_open_counts_sql(is_postgres(database)), params).fetchall())
    return {"approve": int(counts.get("approve", 0)), "sign": int(counts.get("sign", 0))}


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
    database = db.obj
    params = (userid, RecipientStatus.INVALID.value, TaskState.PENDING.value, "approve", "sign", now(), max(limit, 1))
    rows = database.execute_sql(_open_tasks_sql(is_postgres(database)), params).fetchall()
    if not rows:
        return [], 0
    total = rows[0][-1]
    if limit <= 0:
        return [], total
    return [
        PendingTask(
            task_id=task_id,
            type=kind,
            title=title,
            description=description,
            url=url,
            created_at=created_at,
            initiator=initiator,
            deadline=deadline,
        )
        for task_id, kind, title, description, url, created_at, initiator, deadline, _ in rows
    ], total
