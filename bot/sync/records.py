"""What the directory says about a user or a department, normalised from any WeCom source
(user/get, user/list rows, user/list_id rows, change_contact events), and its content hash.

A user record is a dict with any of these keys (a partial record, e.g. from an ID-only event,
has only the keys the source carried):

    userid, name, mobile, email, position, alias, status, main_department,
    departments: tuple of (department_id, order, is_leader) sorted by department id

A field WeCom hides (mobile/email under the 2022 privacy rules, docs/wecom.md "Privacy rules (2022)") comes as None,
never as "": the store keeps null for it, or the OAuth value it already has.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

USER_FIELDS = ("name", "mobile", "email", "position", "alias", "status", "main_department", "biz_mail", "extattr")
INACTIVE_STATUS = (2, 5)  # 2 disabled by an admin, 5 left (退出企业)


def _text(v) -> str | None:
    if v is None:
        return None
    v = str(v).strip()
    return v or None


def _int(v) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(str(v).strip())
    except ValueError:
        return None


def _ints(v) -> list[int]:
    """A list from JSON, or WeCom's comma-separated event form "1,7"."""
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple)):
        items = v
    else:
        items = str(v).split(",")
    out = []
    for x in items:
        n = _int(x)
        if n is not None:
            out.append(n)
    return out


def memberships(depts: list[int], orders: list[int] | None, leaders: list[int] | None) -> tuple:
    orders = orders or []
    leaders = leaders or []
    seen = {}
    for i, d in enumerate(depts):
        if d in seen:
            continue
        seen[d] = (d, orders[i] if i < len(orders) else 0, bool(leaders[i]) if i < len(leaders) else False)
    return tuple(seen[d] for d in sorted(seen))


def user_from_api(u: dict) -> dict:
    """A full record from a user/get answer or a user/list row."""
    depts = _ints(u.get("department"))
    return {
        "userid": str(u["userid"]),
        "name": _text(u.get("name")) or "",
        "mobile": _text(u.get("mobile")),
        "email": _text(u.get("email")) or _text(u.get("biz_mail")),
        "position": _text(u.get("position")),
        "alias": _text(u.get("alias")),
        "biz_mail": _text(u.get("biz_mail")),
        "extattr": extattr_text(u.get("extattr")),
        "status": _int(u.get("status")),
        "main_department": _int(u.get("main_department")) or (depts[0] if depts else None),
        "departments": memberships(depts, _ints(u.get("order")), _ints(u.get("is_leader_in_dept"))),
    }


# change_contact event field -> record key (docs/wecom.md, "Events wqbot handles")
_EVENT_FIELDS = {"Name": "name", "Mobile": "mobile", "Email": "email", "Position": "position", "Alias": "alias"}


def user_from_event(msg: dict, userid: str) -> dict:
    """The partial record a create_user/update_user event carries (only the fields present)."""
    rec: dict = {"userid": userid}
    for tag, key in _EVENT_FIELDS.items():
        if tag in msg:
            rec[key] = _text(msg.get(tag))
    if rec.get("email") is None and _text(msg.get("BizMail")):
        rec["email"] = _text(msg.get("BizMail"))
    if "BizMail" in msg:
        rec["biz_mail"] = _text(msg.get("BizMail"))
    if "name" in rec and rec["name"] is None:
        rec["name"] = ""
    if "Status" in msg:
        rec["status"] = _int(msg.get("Status"))
    if "MainDepartment" in msg:
        rec["main_department"] = _int(msg.get("MainDepartment"))
    if "Department" in msg:
        depts = _ints(msg.get("Department"))
        leaders = _ints(msg.get("IsLeaderInDept")) if "IsLeaderInDept" in msg else None
        rec["departments"] = memberships(depts, None, leaders)
        rec["_leaders_known"] = leaders is not None
        rec["_orders_known"] = False  # events carry no per-department order
    return rec


def extattr_text(v) -> str | None:
    """user/get's `extattr` ({"attrs": [{"type": 0, "name": "工号", "text": {"value": "A001"}}, …]})
    as stored: JSON {name: value} of the text fields (sorted, so its hash is stable), or None."""
    attrs = v.get("attrs") if isinstance(v, dict) else None
    out: dict[str, str] = {}
    for a in attrs if isinstance(attrs, list) else ():
        if isinstance(a, dict) and a.get("name") and isinstance(a.get("text"), dict):
            value = _text(a["text"].get("value"))
            if value:
                out[str(a["name"])] = value
    return json.dumps(out, ensure_ascii=False, sort_keys=True) if out else None


def department_from_api(d: dict) -> dict:
    rec: dict[str, Any] = {"id": int(d["id"]), "parent_id": _int(d.get("parentid")), "order": _int(d.get("order")) or 0}
    if "name" in d:
        rec["name"] = _text(d.get("name")) or ""
    return rec


def department_from_event(msg: dict) -> dict:
    rec: dict[str, Any] = {"id": int(msg["Id"])}
    if "Name" in msg:
        rec["name"] = _text(msg.get("Name")) or ""
    if "ParentId" in msg:
        rec["parent_id"] = _int(msg.get("ParentId"))
    if "Order" in msg:
        rec["order"] = _int(msg.get("Order")) or 0
    return rec


# -- hashes ----------------------------------------------------------------------------------------
def _digest(parts) -> str:
    return hashlib.sha1("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()


def detail_hash(rec: dict) -> str:
    return _digest([rec.get(k) for k in USER_FIELDS] + [rec.get("departments", ())])


def dept_hash(dept_ids) -> str:
    return _digest(sorted(set(dept_ids)))


def department_hash(rec: dict) -> str:
    return _digest((rec.get("name"), rec.get("parent_id"), rec.get("order")))


def is_active(status: int | None) -> bool:
    return status not in INACTIVE_STATUS


# -- linking ---------------------------------------------------------------------------------------
_MOBILE_JUNK = re.compile(r"[\s\-()]")


def normalise_mobile(v: str | None) -> str | None:
    """ "+86 138-0000-0000" and "13800000000" are one account key; other country codes are kept."""
    if not v:
        return None
    v = _MOBILE_JUNK.sub("", v)
    if v.startswith("+86") and len(v) == 14:
        v = v[3:]
    elif v.startswith("0086") and len(v) == 15:
        v = v[4:]
    return v or None


def normalise_email(v: str | None) -> str | None:
    return v.strip().lower() or None if v else None


def normalise(match_field: str, v: str | None) -> str | None:
    """A value of SYNC_MATCH_FIELD as an account key: mobiles without +86 and separators, emails
    (email, biz_mail) lower-cased, anything else trimmed."""
    if match_field == "mobile":
        return normalise_mobile(v)
    if match_field in ("email", "biz_mail"):
        return normalise_email(v)
    return v.strip() or None if v else None


def attribute(match_field: str, rec: dict) -> str | None:
    """The raw SYNC_MATCH_FIELD value of a user record (or a stored row's fields)."""
    if match_field.startswith("extattr:"):
        try:
            attrs = json.loads(rec.get("extattr") or "{}")
        except ValueError:
            return None
        v = attrs.get(match_field[8:]) if isinstance(attrs, dict) else None
        return v if isinstance(v, str) else None
    return rec.get(match_field)


def account_key(
    match_field: str, userid: str, mobile: str | None, email: str | None, rec: dict | None = None
) -> str | None:
    """The 微签 account key a member links to under SYNC_MATCH_FIELD (null when hidden or empty)."""
    if match_field == "mobile":
        return normalise_mobile(mobile)
    if match_field == "email":
        return normalise_email(email)
    if match_field == "userid":
        return userid
    return normalise(match_field, attribute(match_field, rec or {}))


def normalise_key(match_field: str, key: str) -> str:
    """A recipient key as 微签 sends it, in the form `account_key` stores."""
    if match_field == "userid":
        return key
    return normalise(match_field, key) or key
