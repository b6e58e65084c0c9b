"""POST /api/v1/notifications bodies (docs/api.md, "Notifications"): validated into a `NotificationRequest`.

Every problem raises `Invalid(field, message)`; the API answers 400 naming the field."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from bot.auth.nextpath import MAX_STORED, stored_length
from store.clock import CST  # a deadline without an offset is 微签's local (China) time
from store.notifications import TaskState

KINDS = ("approve", "sign", "notice", "close")
RESULTS = (TaskState.APPROVED, TaskState.REJECTED, TaskState.SIGNED, TaskState.WITHDRAWN)  # what a close sets
MAX_RECIPIENTS = 50000
ID_MAX, TASK_ID_MAX, KEY_MAX = 128, 128, 200
TITLE_MAX, TEXT_MAX, URL_MAX = 512, 4000, 2000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Invalid(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass
class NotificationRequest:
    id: str
    type: str
    task_id: str | None = None
    title: str | None = None
    description: str | None = None
    initiator: str | None = None
    recipients: list[str] = field(default_factory=list)
    url: str | None = None
    deadline: float | None = None  # epoch seconds
    result: str | None = None  # close only
    remind_before_hours: float | None = None  # None: REMIND_BEFORE_HOURS; 0: no reminder

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NotificationRequest":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})


def _text(body: dict, name: str, *, required: bool = False, limit: int = TEXT_MAX, single_line: bool = False):
    v = body.get(name)
    if v is None or (isinstance(v, str) and not v.strip() and not required):
        if required:
            raise Invalid(name, "is required")
        return None
    if not isinstance(v, str):
        raise Invalid(name, "must be a string")
    v = v.strip()
    if not v:
        raise Invalid(name, "must not be empty")
    if len(v) > limit:
        raise Invalid(name, f"is longer than {limit} characters")
    if single_line and _CONTROL.search(v):
        raise Invalid(name, "must not contain control characters")
    return v


def parse_deadline(v) -> float | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise Invalid("deadline", "must be an ISO 8601 string, e.g. 2026-12-01T18:00:00+08:00")
    try:
        dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("deadline", "must be an ISO 8601 date-time, e.g. 2026-12-01T18:00:00+08:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=CST)
    return dt.timestamp()


def parse_remind_before(v) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 24 * 90:
        raise Invalid("remind_before_hours", "must be a number of hours from 0 (no reminder) to 2160, e.g. 24")
    return float(v)


def check_path(v: str | None, name: str = "url") -> str | None:
    """A path inside the H5 app: /oauth/h5 refuses anything else, so say so now."""
    if v is None:
        return None
    if not v.startswith("/") or v.startswith("//") or "\\" in v or _CONTROL.search(v):
        raise Invalid(
            name,
            "must be a path inside the 微签 H5 app starting with /, "
            "e.g. /pages/task/task_detail?id=T-1001 (not a full URL)",
        )
    if stored_length(v) > MAX_STORED:  # the login that opens it would land on the home page
        raise Invalid(name, f"is {stored_length(v)} bytes once percent-encoded; at most {MAX_STORED}")
    return v


def _recipients(body: dict, required: bool) -> list[str]:
    v = body.get("recipients")
    if v is None:
        if required:
            raise Invalid("recipients", "is required: a list of WeCom userids or linked 微签 account keys")
        return []
    if not isinstance(v, list):
        raise Invalid("recipients", "must be a list of strings")
    out: dict[str, None] = {}
    for i, r in enumerate(v):
        if not isinstance(r, str) or not r.strip():
            raise Invalid(f"recipients[{i}]", "must be a non-empty string")
        r = r.strip()
        if len(r) > KEY_MAX or _CONTROL.search(r):
            raise Invalid(f"recipients[{i}]", f"must be at most {KEY_MAX} printable characters")
        out[r] = None
    if required and not out:
        raise Invalid("recipients", "must name at least one recipient")
    if len(out) > MAX_RECIPIENTS:
        raise Invalid("recipients", f"has {len(out)} entries; at most {MAX_RECIPIENTS} per notification")
    return list(out)


def parse(body: dict) -> NotificationRequest:
    nid = _text(body, "id", required=True, limit=ID_MAX, single_line=True)
    kind = body.get("type")
    if kind not in KINDS:
        raise Invalid("type", "must be one of " + ", ".join(KINDS))
    task_id = _text(body, "task_id", required=kind != "notice", limit=TASK_ID_MAX, single_line=True)
    if kind == "close":
        result = body.get("result")
        if result not in RESULTS:
            raise Invalid("result", "must be one of " + ", ".join(RESULTS))
        return NotificationRequest(
            id=nid, type=kind, task_id=task_id, result=result, recipients=_recipients(body, required=False)
        )
    return NotificationRequest(
        id=nid,
        type=kind,
        task_id=task_id,
        title=_text(body, "title", required=True, limit=TITLE_MAX),
        description=_text(body, "description"),
        initiator=_text(body, "initiator", limit=KEY_MAX, single_line=True),
        recipients=_recipients(body, required=True),
        url=check_path(_text(body, "url", limit=URL_MAX, single_line=True)),
        deadline=parse_deadline(body.get("deadline")),
        remind_before_hours=parse_remind_before(body.get("remind_before_hours")),
    )
