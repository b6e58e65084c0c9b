"""待我处理: a member's open tasks (the data contract the chat menu reads)."""

from __future__ import annotations

from functools import lru_cache
from typing import TypedDict

from store import db, prepared
from store.db import is_postgres
from store.models import now
from store.notifications import NotifyRecipient, NotifyTask, RecipientStatus, TaskState

_COLUMNS = ("task_id", "kind", "title", "description", "url", "created_at", "initiator", "deadline")


def _members_rows(p: str) -> str:
    """The member's (task_id, round) pairs, each once, from their recipient rows (m)."""
    r = NotifyRecipient._meta.table_name
    return f'SELECT DISTINCT r."task_id", r."round" FROM "{r}" AS r WHERE r."userid" = {p} AND r."status" != {p}'


_BY_KEY = 't."task_id" = m."task_id" AND t."round" = m."round"'


def _still_open(p: str) -> str:
    """The task (t) is open: `state || ''` keeps either planner off the state index (see below)."""
    return f't."state" || \'\' = {p} AND t."kind" IN ({p}, {p}) AND (t."deadline" IS NULL OR t."deadline" > {p})'


@lru_cache(maxsize=4)
def _open_tasks_sql(postgres: bool) -> str:
    """The member's open tasks, newest first, each with how many there are in all.

    The query starts from the member's own recipient rows (the (userid, task_id) index), each task
    and round once (a member sent a task twice in one round sees it once), and looks each task up
    by its key. Written as `IN (subquery)` it was planned from `state = 'pending'` instead, testing
    every open task in the store: its cost grew with the store, not the member (bench/README.md).
    `state || ''` keeps either planner off the state index (PostgreSQL without fresh statistics
    picked it: 31 ms for 3,500 open tasks against 0.3 ms by key). SQLite's CROSS JOIN fixes the
    join order. PostgreSQL with fresh statistics joined the other way round: taking `state || ''`
    to match few tasks, it hashed the member's rows and scanned every task (0.9 ms for 3,500 open
    tasks against 0.17 ms by key); its LATERAL subquery, fenced by OFFSET 0, looks each task up by
    its key whatever the statistics say. COUNT(*) OVER () gives the total in the same statement."""
    p = "%s" if postgres else "?"
    t = NotifyTask._meta.table_name
    mine, by_key, still_open = _members_rows(p), _BY_KEY, _still_open(p)
    task_cols = ", ".join(f't."{c}"' for c in _COLUMNS)
    if postgres:
        cols = ", ".join(f'x."{c}"' for c in _COLUMNS)
        task = f'SELECT {task_cols} FROM "{t}" AS t WHERE {by_key} AND {still_open}'
        return (
            f"SELECT {cols}, COUNT(*) OVER () FROM ({mine}) AS m CROSS JOIN LATERAL ({task} OFFSET 0) AS x "
            f'ORDER BY x."created_at" DESC, x."task_id" LIMIT {p}'
        )
    return (
        f'SELECT {task_cols}, COUNT(*) OVER () FROM ({mine}) AS m CROSS JOIN "{t}" AS t WHERE {by_key} AND {still_open} '
        f'ORDER BY t."created_at" DESC, t."task_id" LIMIT {p}'
    )


@lru_cache(maxsize=4)
def _open_counts_sql(postgres: bool) -> str:
    """The member's open tasks counted by kind, planned from the member's recipient rows like
    `_open_tasks_sql` (the 工作台 tile reads this for every member whose tasks changed)."""
    p = "%s" if postgres else "?"
    t = NotifyTask._meta.table_name
    mine = _members_rows(p)
    if postgres:  # fenced like `_open_tasks_sql`: with fresh statistics it scanned every task
        task = f'SELECT t."task_id", t."kind" FROM "{t}" AS t WHERE {_BY_KEY} AND {_still_open(p)}'
        return (
            f'SELECT x."kind", COUNT(DISTINCT x."task_id") FROM ({mine}) AS m '
            f'CROSS JOIN LATERAL ({task} OFFSET 0) AS x GROUP BY x."kind"'
        )
    return (
        f'SELECT t."kind", COUNT(DISTINCT t."task_id") FROM ({mine}) AS m CROSS JOIN "{t}" AS t '
        f'WHERE {_BY_KEY} AND {_still_open(p)} GROUP BY t."kind"'
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
    rows = prepared.execute(database, _open_tasks_sql(is_postgres(database)), params).fetchall()
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
