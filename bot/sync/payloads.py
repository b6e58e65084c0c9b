"""The org API's shapes of a member and a department (also the change feed's `data`): one place, so
the live events, the reconciliation and relinking after a SYNC_MATCH_FIELD change agree."""

from __future__ import annotations

from store.directory import Department, User


def user_payload(u: User, departments: list[int]) -> dict:
    return {
        "userid": u.userid,
        "name": u.name,
        "departments": list(departments),
        "mobile": u.mobile,
        "email": u.email,
        "position": u.position,
        "active": bool(u.active),
        "account": u.account,
        "main_department": u.main_department,
    }


def department_payload(d: Department) -> dict:
    return {"id": d.id, "name": d.name, "parent_id": d.parent_id, "order": d.order, "active": bool(d.active)}
