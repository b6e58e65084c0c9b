"""`/api/v1/org/*` (docs/api.md, "The directory"): the directory as 微签 reads it. Bearer `WEIQIAN_API_TOKEN`.

- `GET /api/v1/org/departments` → `{"departments": [{id, name, parent_id, order, active}]}`
- `GET /api/v1/org/users?cursor&limit` → `{"users": [...], "next_cursor"}`: by userid; the
  cursor is opaque; `next_cursor` is null on the last page. Departed users are listed with
  `"active": false`.
- `GET /api/v1/org/changes?after=SEQ&limit=N` → `{"changes": [{seq, kind, id, data, at}], "next"}`:
  poll with `after=next`. seq increases strictly and a row never appears behind one already seen.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import defaultdict
from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.api.common import APIError, endpoint, loads
from settings import Settings
from store.directory import Change, Department, User, UserDepartment

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
SEQ_MAX = 2**63 - 1  # seq is a signed 64-bit column: a larger `after` cannot be compared with it


def _int_param(request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # Plain ASCII digits only: int() would also take "1_000", " 7" and other scripts' digits.
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):
        raise APIError(400, "invalid_parameter", f"{name} must be a whole number, not {raw[:40]!r}")
    v = int(raw)
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise APIError(400, "invalid_parameter", f"{name} must be {bound}")
    return v


def encode_cursor(userid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": userid}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = loads(raw, "cursor")["after"]
        if not isinstance(after, str) or "\x00" in after:  # no userid holds NUL; PostgreSQL refuses it
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError, APIError):
        raise APIError(400, "invalid_cursor", "cursor is not one this API returned: start again without it") from None


def _departments() -> dict:
    rows = Department.select().order_by(Department.id)
    return {
        "departments": [
            {"id": d.id, "name": d.name, "parent_id": d.parent_id, "order": d.order, "active": bool(d.active)}
            for d in rows
        ]
    }


def _users(after: str | None, limit: int) -> dict:
    q = User.select().order_by(User.userid).limit(limit + 1)
    if after is not None:
        q = q.where(User.userid > after)
    users = list(q)
    more = len(users) > limit
    users = users[:limit]
    depts = defaultdict(list)
    if users:
        for uid, d in (
            UserDepartment.select(UserDepartment.userid, UserDepartment.department_id)
            .where(UserDepartment.userid.in_([u.userid for u in users]))
            .order_by(UserDepartment.userid, UserDepartment.department_id)
            .tuples()
        ):
            depts[uid].append(d)
    out = []
    for u in users:
        ds = depts.get(u.userid, [])
        if u.main_department in ds:  # the main department first
            ds = [u.main_department] + [d for d in ds if d != u.main_department]
        out.append(
            {
                "userid": u.userid,
                "name": u.name,
                "departments": ds,
                "mobile": u.mobile,
                "email": u.email,
                "position": u.position,
                "active": bool(u.active),
                "account": u.account,
            }
        )
    return {"users": out, "next_cursor": encode_cursor(users[-1].userid) if more else None}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _changes(after: int, limit: int) -> dict:
    rows = list(Change.select().where(Change.seq > after).order_by(Change.seq).limit(limit))
    changes = [
        {
            "seq": c.seq,
            "kind": c.kind,
            "id": int(c.ref) if c.kind.startswith("department.") else c.ref,
            "data": json.loads(c.data),
            "at": _iso(c.at),
        }
        for c in rows
    ]
    return {"changes": changes, "next": rows[-1].seq if rows else after}


@endpoint
async def departments(request, settings: Settings):
    return JSONResponse(await run_in_threadpool(_departments))


@endpoint
async def users(request, settings: Settings):
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = request.query_params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    return JSONResponse(await run_in_threadpool(_users, after, limit))


@endpoint
async def changes(request, settings: Settings):
    after = _int_param(request, "after", 0, 0, SEQ_MAX)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return JSONResponse(await run_in_threadpool(_changes, after, limit))


def routes(settings: Settings) -> list[Route]:
    return [
        Route("/api/v1/org/departments", departments, methods=["GET"]),
        Route("/api/v1/org/users", users, methods=["GET"]),
        Route("/api/v1/org/changes", changes, methods=["GET"]),
    ]
