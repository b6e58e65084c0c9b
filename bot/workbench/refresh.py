"""Keeping every member's 工作台 tile current (docs/notifications.md, "Follow-up").

Every minute `workbench.refresh`:
1. marks stale (`WorkbenchTile.dirty`) the members whose pending set may have changed since the
   last run: recipients of a task that changed (new, decided, closed, expired, reopened) or whose
   own card changed (delivered, invalid). The window reaches `OVERLAP` back, so a transaction
   that committed late with an older timestamp is still seen;
2. for each stale member, recomputes the counts; unchanged counts cost nothing. Changed ones get
   one `set_workbench_data`, at most one per member per `COOLDOWN` (claimed with a conditional
   UPDATE, so two workers never both set a member's tile in the same minute), paced by the
   client's rate limiter, on a few threads (calls only; every store write is on the caller's
   thread).

WeCom unreachable or rate limited: the members not done stay stale for the next minute. A
refusal (an errcode docs/wecom.md could not confirm, a member outside the app's 可见范围…) is kept
on the member's row, counted and logged with the errcode and hint; the console shows it.

Nothing is pushed until `wqbot workbench push` set the template (`template_state()`): per-member
data without a keydata template is refused by WeCom, and would only fill the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from huey import crontab

from bot.observability import metrics
from bot.queue import periodic_job
from bot.wecom import APIError, RateLimited, TransportError, client_for
from settings import Settings, get_settings
from store import db
from store.followup import WorkbenchTile
from store.models import KeyValue, now
from store.notifications import NotifyRecipient, NotifyTask

from . import tile

log = logging.getLogger("wqbot.workbench")

TEMPLATE_KEY = "workbench:template"
WATERMARK_KEY = "workbench:watermark"
OVERLAP = 120.0  # seconds the change window reaches back before the last run
COOLDOWN = 55.0  # one set_workbench_data per member per minute tick (WeCom allows 10 a minute)
CLAIM_TTL = 120.0  # a claim not finished within this (the worker died) is free again
THREADS = 8


def _get(key: str) -> str | None:
    row = KeyValue.get_or_none(KeyValue.key == key)
    return row.value if row else None


def _put(key: str, value: str) -> None:
    KeyValue.insert(key=key, value=value, expires_at=None).on_conflict(
        conflict_target=[KeyValue.key], update={KeyValue.value: value}
    ).execute()


def template_state() -> dict | None:
    """{"at": when `wqbot workbench push` set it, "items": [...]}, or None."""
    raw = _get(TEMPLATE_KEY)
    return json.loads(raw) if raw else None


def template_set(settings: Settings, client) -> dict:
    body = tile.template(settings)
    client.workbench_set_template(body)
    t = now()
    _put(TEMPLATE_KEY, json.dumps({"at": t, "items": [i["key"] for i in body["keydata"]["items"]]}))
    if _get(WATERMARK_KEY) is None:
        _put(WATERMARK_KEY, str(t))
    return body


# -- 1. who may have changed ---------------------------------------------------------------------
def changed_since(since: float) -> list[str]:
    tasks = NotifyTask.select(NotifyTask.task_id).where(NotifyTask.updated_at >= since)
    q = (
        NotifyRecipient.select(NotifyRecipient.userid)
        .where(
            NotifyRecipient.task_id.is_null(False),
            (NotifyRecipient.updated_at >= since) | NotifyRecipient.task_id.in_(tasks),
        )
        .distinct()
    )
    return [u for (u,) in q.tuples()]


def mark_stale(userids: Iterable[str]) -> int:
    rows = [{"userid": u, "dirty": True} for u in dict.fromkeys(userids)]
    with db.atomic():
        for i in range(0, len(rows), 500):
            WorkbenchTile.insert_many(rows[i : i + 500]).on_conflict(
                conflict_target=[WorkbenchTile.userid], update={WorkbenchTile.dirty: True}
            ).execute()
    return len(rows)


def mark_changed(t: float) -> int:
    since = float(_get(WATERMARK_KEY) or t) - OVERLAP
    n = mark_stale(changed_since(since))
    _put(WATERMARK_KEY, str(t))
    return n


# -- 2. setting tiles ----------------------------------------------------------------------------
class Outcome:
    def __init__(self) -> None:
        self.set = self.unchanged = self.refused = self.skipped = 0
        self.first_error: str | None = None
        self.paused: str | None = None

    def as_dict(self) -> dict:
        return {"set": self.set, "unchanged": self.unchanged, "refused": self.refused, "skipped": self.skipped}


def _claim(userid: str, t: float) -> bool:
    free = WorkbenchTile.claimed_at.is_null() | (WorkbenchTile.claimed_at < t - CLAIM_TTL)
    cooled = WorkbenchTile.pushed_at.is_null() | (WorkbenchTile.pushed_at < t - COOLDOWN)
    WorkbenchTile.insert(userid=userid, dirty=True).on_conflict_ignore().execute()
    cond = [WorkbenchTile.userid == userid, free, cooled]
    return bool(WorkbenchTile.update(claimed_at=t).where(*cond).execute())


def set_tiles(
    settings: Settings, client, userids: list[str], force: bool = False, on_done: Callable[[int], None] | None = None
) -> Outcome:
    """Set the tiles of `userids` whose counts differ from what WeCom shows (all of them with
    `force`). Stops early, leaving the rest stale, when WeCom is unreachable or rate limited."""
    out = Outcome()
    t = now()
    shown = {
        r.userid: (r.approve, r.sign, r.error) for r in WorkbenchTile.select().where(WorkbenchTile.userid.in_(userids))
    }
    todo: list[tuple[str, tile.Counts]] = []
    for u in userids:
        counts = tile.counts_of(u, t)
        approve, sign, _error = shown.get(u, (None, None, None))
        # the same counts as last sent (shown, or refused: retried once they change) cost nothing
        if not force and (approve, sign) == counts:
            WorkbenchTile.update(dirty=False).where(WorkbenchTile.userid == u).execute()
            out.unchanged += 1
        elif _claim(u, t):
            todo.append((u, counts))
        else:
            out.skipped += 1  # set less than a minute ago, or another worker is on it: stays stale
    if on_done and (out.unchanged or out.skipped):
        on_done(out.unchanged + out.skipped)

    def call(item: tuple[str, tile.Counts]) -> tuple[str, tile.Counts, str | None, Exception | None]:
        u, counts = item
        try:
            client.workbench_set_data(tile.data(settings, u, counts))
            return u, counts, None, None
        except (TransportError, RateLimited) as e:
            return u, counts, None, e
        except APIError as e:
            if e.retryable:
                return u, counts, None, e
            return u, counts, str(e), None

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for u, counts, refused, transient in pool.map(call, todo):
            key = WorkbenchTile.userid == u
            if transient is not None:
                WorkbenchTile.update(claimed_at=None, dirty=True).where(key).execute()
                out.paused = out.paused or str(transient)
            elif refused is not None:
                WorkbenchTile.update(
                    approve=counts[0], sign=counts[1], claimed_at=None, dirty=False, error=refused[:500]
                ).where(key).execute()
                out.refused += 1
                out.first_error = out.first_error or refused
            else:
                WorkbenchTile.update(
                    approve=counts[0], sign=counts[1], pushed_at=now(), claimed_at=None, dirty=False, error=None
                ).where(key).execute()
                out.set += 1
            if on_done:
                on_done(1)
    metrics.followup("tile", "set", out.set)
    metrics.followup("tile", "refused", out.refused)
    if out.refused:
        log.error("set_workbench_data refused for %d member(s): %s", out.refused, out.first_error, extra=out.as_dict())
    if out.paused:
        log.warning("tiles paused until the next minute: %s", out.paused, extra=out.as_dict())
    return out


def refresh(settings: Settings, client=None, budget: int | None = None) -> dict:
    if not settings.wecom_enabled or template_state() is None:
        return {}
    t = now()
    marked = mark_changed(t)
    budget = budget or max(1, settings.wecom_rate_limit_per_min // 2)
    stale = [
        r.userid
        for r in WorkbenchTile.select(WorkbenchTile.userid)
        .where(WorkbenchTile.dirty == True)  # noqa: E712 (peewee expression)
        .order_by(WorkbenchTile.userid)
        .limit(budget)
    ]
    if not stale:
        return {"marked": marked}
    out = set_tiles(settings, client or client_for(settings), stale)
    return {"marked": marked, **out.as_dict()}


@periodic_job("workbench.refresh", crontab(minute="*"))
def refresh_job() -> dict:
    return refresh(get_settings())
