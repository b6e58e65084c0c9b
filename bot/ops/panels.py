"""What each admin page shows, read from the store."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from bot.auth.urls import public_base
from settings import Settings
from store.directory import Department, SyncRunStatus, User, UserDepartment

from . import followup_view, notify_view
from . import status as st

SYNC_STATUS: dict[str, str] = {
    SyncRunStatus.RUNNING: "进行中",
    SyncRunStatus.OK: "成功",
    SyncRunStatus.PARTIAL: "部分成功",
    SyncRunStatus.HELD: "已暂停（删除过多）",
    SyncRunStatus.FAILED: "失败",
}
ACTION_ERRORS = {
    "not_found": "找不到该记录，可能已被清理。",
    "not_failed": "该记录不是失败状态，无需重试。",
    "task_over": "该任务已处理或已结束，无需重新发送。",
    "disabled": "企业微信对接已关闭（WECOM_ENABLED=false）。",
    "no_webhook": "未设置 WEIQIAN_WEBHOOK_URL，无法投递。",
    "busy": "已有同步正在进行，请稍后再试。",
    "failed": "操作失败，详见最近错误。",
}
MEMBERS_SHOWN = 200


def action_error_text(code: str | None) -> str | None:
    return ACTION_ERRORS.get(code or "", ACTION_ERRORS["failed"]) if code else None


def admin_sso_url(settings: Settings, state: str) -> str:
    """WeCom PC web login (docs/wecom.md) returning to the console instead of to 微签."""
    base = public_base(settings)
    params = [
        ("login_type", "CorpApp"),
        ("appid", settings.wecom_corp_id),
        ("agentid", str(settings.wecom_agent_id)),
        ("redirect_uri", base + "/admin/login/wecom/callback"),
        ("state", state),
        ("lang", "zh"),
    ]
    return f"{settings.wecom_sso_base}/wwlogin/sso/login?{urlencode(params, quote_via=quote, safe='')}"


# -- status -----------------------------------------------------------------------------------------
def _sync_panel() -> dict[str, Any]:
    info = st.last_sync()
    run = info["last"]
    out = {"last": run, "last_ok_at": info["last_ok_at"], "running": info["running"]}
    if run:
        out["status_text"] = SYNC_STATUS.get(run.get("status"), run.get("status"))
        out["counts"] = [
            (label, run.get(field, 0))
            for field, label in (
                ("users_seen", "成员总数"),
                ("departments_seen", "部门总数"),
                ("created", "新增成员"),
                ("updated", "更新成员"),
                ("renamed", "改名成员"),
                ("disabled", "停用成员"),
                ("reactivated", "恢复成员"),
                ("departments_created", "新增部门"),
                ("departments_updated", "更新部门"),
                ("departments_disabled", "停用部门"),
                ("held_disables", "暂缓停用"),
            )
        ]
        if run.get("status") == "failed" and not run.get("users_seen"):
            # the run read nothing: show what the store holds, not a 0 that reads as "empty corp"
            held = User.select().where(User.active == True).count()  # noqa: E712
            out["counts"][0] = ("成员总数", f"未读取（库中现有 {held} 名在职成员，未改动）")
    return out


def status(settings: Settings) -> dict[str, Any]:
    masked = settings.masked()
    masked["ADMIN_USERIDS"] = ", ".join(settings.admin_userids)
    rows = sorted((name, value if value != "" else "（未设置）") for name, value in masked.items())
    return {
        "settings_rows": rows,
        "sync": _sync_panel(),
        "queue": st.queue_depth(),
        "errors": st.recent_errors(20),
        "audit": st.recent_audit(10),
        "wecom_enabled": settings.wecom_enabled,
        "followup": followup_view.panel(settings),
    }


# -- directory --------------------------------------------------------------------------------------
def directory() -> dict[str, Any]:
    depts = list(Department.select().order_by(Department.parent_id, Department.order.desc(), Department.id).dicts())
    rows = (
        UserDepartment.select(UserDepartment.department_id, User.userid, User.name, User.active, User.position)
        .join(User, on=(UserDepartment.userid == User.userid))
        .order_by(UserDepartment.department_id, UserDepartment.order.desc(), User.userid)
        .dicts()
    )
    members: dict[int, list] = {}
    counts: dict[int, int] = {}
    for r in rows:
        d = r["department_id"]
        counts[d] = counts.get(d, 0) + 1
        if counts[d] <= MEMBERS_SHOWN:
            members.setdefault(d, []).append(r)
    by_id = {
        d["id"]: {**d, "children": [], "members": members.get(d["id"], []), "count": counts.get(d["id"], 0)}
        for d in depts
    }
    roots: list[dict[str, Any]] = []
    for d in by_id.values():
        parent = by_id.get(d["parent_id"])
        (parent["children"] if parent is not None and parent is not d else roots).append(d)
    total_users = User.select().count()
    unplaced = User.select().where(~User.userid.in_(UserDepartment.select(UserDepartment.userid))).count()
    return {
        "roots": roots,
        "total_users": total_users,
        "total_departments": len(depts),
        "active_users": User.select().where(User.active == True).count(),  # noqa: E712
        "unplaced": unplaced,
        "members_shown": MEMBERS_SHOWN,
    }


# -- notifications and webhooks ---------------------------------------------------------------------
def notifications(limit: int = 50) -> dict[str, Any]:
    return notify_view.notifications(limit)


def webhooks(limit: int = 50) -> dict[str, Any]:
    return notify_view.webhooks(limit)
