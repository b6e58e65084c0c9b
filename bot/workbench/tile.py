"""What a member's 工作台 tile shows (docs/notifications.md, "Follow-up"; the API: docs/wecom.md,
"The 工作台 tile"): two `keydata` items, 待审批 N and 待签署 M, each opening the 微签 H5 list of
those tasks logged in (through /oauth/h5?next=…). Pure functions and one read of the store."""

from __future__ import annotations

from bot import texts
from bot.auth.links import h5_entry
from bot.notify.pending import open_counts
from settings import Settings

Counts = tuple[int, int]  # (待审批, 待签署)


def list_url(settings: Settings, kind: str) -> str:
    path = settings.workbench_list_path or "/"
    return h5_entry(settings, f"{path}{'&' if '?' in path else '?'}type={kind}")


def items(settings: Settings, counts: Counts) -> list[dict]:
    approve, sign = counts
    return [
        {"key": texts.TILE_APPROVE, "data": str(approve), "jump_url": list_url(settings, "approve")},
        {"key": texts.TILE_SIGN, "data": str(sign), "jump_url": list_url(settings, "sign")},
    ]


def template(settings: Settings) -> dict:
    """The app's template, with 0 / 0 as the corp-wide default for members not set yet.
    replace_user_data false: pushing the template again keeps every member's own counts."""
    return {"type": "keydata", "keydata": {"items": items(settings, (0, 0))}, "replace_user_data": False}


def data(settings: Settings, userid: str, counts: Counts) -> dict:
    return {"userid": userid, "type": "keydata", "keydata": {"items": items(settings, counts)}}


def counts_of(userid: str, at: float | None = None) -> Counts:
    counts = open_counts(userid, at)
    return counts["approve"], counts["sign"]
