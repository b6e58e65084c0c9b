"""The morning digest (docs/notifications.md, "Follow-up"): opt-in with DIGEST_AT (China time) on
DIGEST_WEEKDAYS, one `news` message per member with open tasks: a header (你有 N 项待处理), the
newest tasks, and 还有 N 项 when there are more. Members with nothing pending get nothing.

Once per member per China-time day, across workers and restarts: `DigestSent(day, userid)` is
claimed with INSERT … ON CONFLICT DO NOTHING before the send, holding the exact body. A claim
still `sending` after `LEASE` (its worker died around the send) is resent byte for byte with
`enable_duplicate_check`, so WeCom drops it if the first send got through.

Spread: each minute from DIGEST_AT on sends at most `per_minute()` digests (a quarter of the
minute's and a 120th of the hour's message/send ceiling), so cards and reminders keep most of
the quota; the rest wait for the next minute. Sends run on a few threads (HTTP only); every
store write is on the job's thread.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from huey import crontab

from bot import texts
from bot.auth.links import h5_entry
from bot.observability import metrics
from bot.queue import periodic_job
from bot.wecom import APIError, RateLimited, TransportError, client_for
from settings import Settings, get_settings
from store import db
from store.clock import CST
from store.followup import DigestSent
from store.models import now
from store.notifications import NotifyRecipient, NotifyTask, RecipientStatus, TaskState

from . import cards
from .pending import PendingTask, pending_tasks
from .reminders import when

log = logging.getLogger("wqbot.notify")

SHOWN = 6  # tasks listed; with the header and 还有 N 项 that is WeCom's 8 articles at most
LEASE = 300.0  # a claim still `sending` this long lost its worker: resend it
THREADS = 8


def per_minute(settings: Settings) -> int:
    return max(1, min(settings.wecom_rate_limit_per_min // 4, settings.wecom_rate_limit_per_hour // 120))


def day_due(settings: Settings, t: float) -> str | None:
    """Today's date (China time) once DIGEST_AT has passed on a digest weekday, else None."""
    if not settings.digest_at:
        return None
    d = datetime.fromtimestamp(t, CST)
    if d.isoweekday() not in settings.digest_weekdays:
        return None
    hh, mm = (int(x) for x in settings.digest_at.split(":"))
    if (d.hour, d.minute) < (hh, mm):
        return None
    return d.date().isoformat()


def message(settings: Settings, userid: str, tasks: list[PendingTask], total: int) -> dict:
    list_url = h5_entry(settings, settings.workbench_list_path or "/")
    articles = [{"title": texts.DIGEST_TITLE.format(n=total), "url": list_url}]
    for task in tasks[:SHOWN]:
        desc = texts.DIGEST_ITEM_DESC.get(task["type"], "")
        if task["deadline"]:
            desc += texts.DIGEST_DEADLINE.format(when=when(task["deadline"]))
        articles.append(
            {"title": f"《{task['title']}》", "description": desc, "url": h5_entry(settings, task["url"] or "/")}
        )
    if total > SHOWN:
        articles.append({"title": texts.DIGEST_MORE.format(n=total - SHOWN), "url": list_url})
    return {
        "touser": userid,
        "msgtype": "news",
        "news": {"articles": articles},
        "enable_duplicate_check": 1,
        "duplicate_check_interval": cards.DUPLICATE_CHECK_INTERVAL,
    }


def members_waiting(day: str, t: float, limit: int) -> list[str]:
    """Members with open tasks who have no digest claim for `day` (the 待我处理 rule)."""
    claimed = DigestSent.select(DigestSent.userid).where(DigestSent.day == day)
    q = (
        NotifyRecipient.select(NotifyRecipient.userid)
        .join(NotifyTask, on=(NotifyRecipient.task_id == NotifyTask.task_id))
        .where(
            NotifyRecipient.status != RecipientStatus.INVALID,
            NotifyRecipient.round == NotifyTask.round,
            NotifyTask.state == TaskState.PENDING,
            NotifyTask.kind.in_(("approve", "sign")),
            NotifyTask.deadline.is_null() | (NotifyTask.deadline > t),
            NotifyRecipient.userid.not_in(claimed),
        )
        .distinct()
        .order_by(NotifyRecipient.userid)
        .limit(limit)
    )
    return [u for (u,) in q.tuples()]


def _claim(day: str, userid: str, body: str, t: float) -> bool:
    cur = db.obj.execute_sql(
        'INSERT INTO "digest_sent" ("day", "userid", "status", "body", "claimed_at") '
        "VALUES ({0}, {0}, {0}, {0}, {0}) ON CONFLICT DO NOTHING".format(db.obj.param),
        (day, userid, "sending", body, t),
    )
    return cur.rowcount == 1


@periodic_job("notify.digest", crontab(minute="*"))
def digest() -> dict:
    return run(get_settings())


def run(settings: Settings, client=None, budget: int | None = None) -> dict:
    t = now()
    day = day_due(settings, t)
    if day is None or not settings.wecom_enabled:
        return {}
    budget = budget or per_minute(settings)
    todo: list[tuple[str, str]] = []
    # claims whose worker died around the send: the same bytes again (duplicate check)
    for row in (
        DigestSent.select()
        .where(DigestSent.day == day, DigestSent.status == "sending", DigestSent.claimed_at < t - LEASE)
        .limit(budget)
    ):
        if (
            DigestSent.update(claimed_at=t)
            .where(DigestSent.day == day, DigestSent.userid == row.userid, DigestSent.claimed_at == row.claimed_at)
            .execute()
        ):
            todo.append((row.userid, row.body))
    for userid in members_waiting(day, t, budget - len(todo)):
        tasks, total = pending_tasks(userid, SHOWN)
        if not total:
            continue
        body = json.dumps(message(settings, userid, tasks, total), ensure_ascii=False, sort_keys=True)
        if _claim(day, userid, body, t):
            todo.append((userid, body))
    if not todo:
        return {"day": day, "sent": 0}
    client = client or client_for(settings)

    def send(item: tuple[str, str]) -> tuple[str, str | None, Exception | None]:
        userid, body = item
        try:
            client.message_send(json.loads(body))
            return userid, None, None
        except (TransportError, RateLimited) as e:
            return userid, None, e
        except APIError as e:
            return (userid, None, e) if e.retryable else (userid, str(e), None)

    out: dict[str, int] = {"sent": 0, "failed": 0, "later": 0}
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for userid, refused, transient in pool.map(send, todo):
            key = (DigestSent.day == day) & (DigestSent.userid == userid)
            if transient is not None:
                # WeCom did not take it: resent after LEASE with the same bytes
                out["later"] += 1
            elif refused is not None:
                DigestSent.update(status="failed", error=refused[:500]).where(key).execute()
                out["failed"] += 1
            else:
                DigestSent.update(status="sent", sent_at=now()).where(key).execute()
                out["sent"] += 1
    metrics.followup("digest", "sent", out["sent"])
    metrics.followup("digest", "failed", out["failed"])
    log.info("morning digest", extra={"day": day, **out})
    return {"day": day, **out}
