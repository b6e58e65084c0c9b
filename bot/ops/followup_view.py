"""The status page's 跟进 panel (docs/notifications.md, "Follow-up"): reminders sent, tasks expired
and digests sent today (China time), and the state of the members' 工作台 tiles."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from bot.workbench.refresh import template_state
from settings import Settings
from store.clock import CST, today_cst
from store.followup import DigestSent, TaskReminder, WorkbenchTile
from store.notifications import NotifyTask, TaskState


def panel(settings: Settings) -> dict[str, Any]:
    day = today_cst()
    since = datetime.combine(day, time(0, 0), CST).timestamp()
    tiles = WorkbenchTile.select()
    refused = tiles.where(WorkbenchTile.error.is_null(False))
    last_refusal = refused.order_by(WorkbenchTile.pushed_at.desc(nulls="LAST")).first()
    return {
        "reminders_today": TaskReminder.select().where(TaskReminder.status == "sent", TaskReminder.at >= since).count(),
        "reminder_failures_today": TaskReminder.select()
        .where(TaskReminder.status == "failed", TaskReminder.at >= since)
        .count(),
        "remind_before_hours": settings.remind_before_hours,
        "expired_today": NotifyTask.select()
        .where(
            NotifyTask.state == TaskState.EXPIRED, NotifyTask.state_via == "deadline", NotifyTask.updated_at >= since
        )
        .count(),
        "digest_at": settings.digest_at,
        "digests_today": DigestSent.select()
        .where(DigestSent.day == day.isoformat(), DigestSent.status == "sent")
        .count(),
        "digest_failures_today": DigestSent.select()
        .where(DigestSent.day == day.isoformat(), DigestSent.status == "failed")
        .count(),
        "tile_template": template_state() is not None,
        "tiles_set": tiles.where(WorkbenchTile.pushed_at.is_null(False), WorkbenchTile.error.is_null()).count(),
        "tiles_stale": tiles.where(WorkbenchTile.dirty == True).count(),  # noqa: E712
        "tiles_refused": refused.count(),
        "tile_last_error": last_refusal.error if last_refusal else None,
    }
