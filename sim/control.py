"""The control API under /sim/… (JSON): drive the emulated corp from tests, the demo or curl.

Directory changes send the matching change_contact callback; "send" makes a member tap or type;
faults, quotas, the clock and token expiry make WeCom misbehave on purpose; the call log,
messages and cards show what wqbot did. Errors are {"error", "message"} with a 4xx status."""

from __future__ import annotations

import json
import time
from typing import overload

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .directory import Department, DirectoryError, User
from .state import Sim

CONFIG_FIELDS: dict[str, type | tuple[type, ...]] = {
    "hide_private": bool,
    "contacts_new_ip": bool,
    "ids_only_callbacks": bool,
    "token_expires_in": int,
    "code_ttl": int,
    "user_ticket_ttl": int,
    "response_code_ttl": int,
    "callback_url": str,
    "contacts_callback_url": str,
    "redirect_domain": str,
    "sso_redirect_domain": str,
    "home_url": str,
    "visible_departments": list,
    "visible_users": list,
    "member_messages_per_minute": int,
    "member_messages_per_hour": int,
    "callback_timeout": (int, float),
    "callback_retries": int,
    "callback_retry_interval": (int, float),
}
EVENT_TYPES = ("text", "click", "view", "enter_agent", "subscribe", "unsubscribe", "location", "card")


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _err(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def endpoint(fn):
    async def wrapper(request: Request) -> Response:
        sim: Sim = request.app.state.sim
        try:
            result = await fn(request, sim)
        except ControlError as e:
            return _err(e.status, e.code, e.message)
        except DirectoryError as e:
            return _err(
                e.status, "not_found" if e.status == 404 else "conflict" if e.status == 409 else "invalid", e.message
            )
        except ValueError as e:
            return _err(400, "invalid", str(e))
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    wrapper.__name__ = fn.__name__
    return wrapper


async def body_of(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ControlError(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ControlError(400, "invalid_json", "the body must be a JSON object")
    return data


@overload
def _int_arg(request: Request, name: str, default: int) -> int: ...
@overload
def _int_arg(request: Request, name: str, default: None = None) -> int | None: ...
def _int_arg(request: Request, name: str, default: int | None = None) -> int | None:
    v = request.query_params.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ControlError(400, "invalid", f"{name} must be a whole number") from None


def _flag(request: Request, name: str, default: bool) -> bool:
    v = request.query_params.get(name)
    if v is None:
        return default
    return v.lower() in ("1", "true", "yes", "on")


# -- overview and config -------------------------------------------------------------------------
@endpoint
async def overview(request: Request, sim: Sim):
    d = sim.directory
    base = str(request.base_url).rstrip("/")
    return {
        "corp": {"corp_id": sim.cfg.corp_id, "name": sim.cfg.corp_name, "agent_id": sim.cfg.agent_id},
        "directory": {
            "users": len(d.users),
            "departments": len(d.departments),
            "generated_in_s": round(sim.generated_in, 3),
            "seed": sim.cfg.seed,
        },
        "wqbot_settings": {
            "WECOM_API_BASE": base,
            "WECOM_OAUTH_BASE": base,
            "WECOM_SSO_BASE": base,
            "WECOM_CORP_ID": sim.cfg.corp_id,
            "WECOM_AGENT_ID": str(sim.cfg.agent_id),
        },
        "calls": sim.call_seq,
        "messages": len(sim.messaging.messages),
        "cards": len(sim.messaging.cards),
        "faults": [f.public() for f in sim.faults.rules],
        "callback_url": sim.cfg.callback_url,
        "contacts_callback_url": sim.cfg.contacts_callback_url,
    }


@endpoint
async def get_config(request: Request, sim: Sim):
    return sim.cfg.public()


@endpoint
async def patch_config(request: Request, sim: Sim):
    data = await body_of(request)
    unknown = sorted(set(data) - set(CONFIG_FIELDS))
    if unknown:
        raise ControlError(
            400, "invalid", f"cannot change {', '.join(unknown)}; changeable: {', '.join(sorted(CONFIG_FIELDS))}"
        )
    for k, v in data.items():
        t = CONFIG_FIELDS[k]
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            raise ControlError(400, "invalid", f"{k} has the wrong type")
    for k, v in data.items():
        if k == "visible_departments":
            v = tuple(int(x) for x in v)
        elif k == "visible_users":
            v = tuple(str(x) for x in v)
        setattr(sim.cfg, k, v)
    sim.invalidate_visibility()
    return sim.cfg.public()


@endpoint
async def reset(request: Request, sim: Sim):
    data = await body_of(request)
    for k in ("users", "departments", "seed"):
        if k in data and (not isinstance(data[k], int) or data[k] < (0 if k == "users" else 1)):
            raise ControlError(400, "invalid", f"{k} must be a whole number")
    sim.reset(data.get("users"), data.get("departments"), data.get("seed"))
    return {
        "users": len(sim.directory.users),
        "departments": len(sim.directory.departments),
        "generated_in_s": round(sim.generated_in, 3),
    }


@endpoint
async def clock(request: Request, sim: Sim):
    if request.method == "POST":
        data = await body_of(request)
        adv = data.get("advance")
        if not isinstance(adv, (int, float)) or isinstance(adv, bool) or adv < 0:
            raise ControlError(400, "invalid", "advance must be a number of seconds ≥ 0")
        sim.clock.advance(adv)
    return {"now": sim.clock.now(), "offset": sim.clock.offset}


@endpoint
async def expire_tokens(request: Request, sim: Sim):
    data = await body_of(request)
    kind = data.get("kind")
    if kind not in (None, "app", "contacts"):
        raise ControlError(400, "invalid", "kind must be app, contacts or null (both)")
    return {"expired": sim.expire_tokens(kind)}


# -- directory reads ------------------------------------------------------------------------------
def _dept_view(sim: Sim, d: Department) -> dict:
    return {
        **sim.directory.department_json(d),
        "members": len(sim.directory.members.get(d.id, ())),
        "children": list(sim.directory.children.get(d.id, ())),
    }


@endpoint
async def list_departments(request: Request, sim: Sim):
    return {"departments": [_dept_view(sim, d) for d in sim.directory.departments.values()]}


@endpoint
async def get_department(request: Request, sim: Sim):
    dept_id = _path_int(request, "dept_id")
    d = sim.directory.departments.get(dept_id)
    if d is None:
        raise ControlError(404, "not_found", f"department {dept_id} does not exist")
    return _dept_view(sim, d)


def _path_int(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise ControlError(400, "invalid", f"{name} must be a whole number") from None


@endpoint
async def list_users(request: Request, sim: Sim):
    d = sim.directory
    offset = _int_arg(request, "offset", 0)
    limit = min(_int_arg(request, "limit", 100), 10000)
    dept = _int_arg(request, "department_id")
    status = _int_arg(request, "status")
    users = d.users_in([dept]) if dept is not None else d.users.values()
    out, total = [], 0
    for u in users:
        if status is not None and u.status != status:
            continue
        if total >= offset and len(out) < limit:
            out.append(d.user_json(u))
        total += 1
    return {"users": out, "total": total, "offset": offset}


@endpoint
async def get_user(request: Request, sim: Sim):
    u = sim.directory.user(request.path_params["userid"])
    if u is None:
        raise ControlError(404, "not_found", f"userid {request.path_params['userid']} does not exist")
    return sim.directory.user_json(u)


# -- directory changes and their change_contact callbacks ------------------------------------------
def _csv(values) -> str:
    return ",".join(str(v) for v in values)


def _user_fields(u: User, ids_only: bool) -> dict:
    if ids_only:
        return {"UserID": u.userid, "Department": _csv(u.department)}
    f = {
        "UserID": u.userid,
        "Name": u.name,
        "Department": _csv(u.department),
        "MainDepartment": u.main_department,
        "IsLeaderInDept": _csv(u.is_leader_in_dept),
    }
    if u.direct_leader:
        f["DirectLeader"] = _csv(u.direct_leader)
    for attr, tag in (("position", "Position"), ("mobile", "Mobile")):
        if getattr(u, attr):
            f[tag] = getattr(u, attr)
    f["Gender"] = int(u.gender)
    for attr, tag in (("email", "Email"), ("biz_mail", "BizMail")):
        if getattr(u, attr):
            f[tag] = getattr(u, attr)
    f["Status"] = u.status
    f["Avatar"] = u.avatar
    for attr, tag in (("alias", "Alias"), ("telephone", "Telephone"), ("address", "Address")):
        if getattr(u, attr):
            f[tag] = getattr(u, attr)
    return f


UPDATE_TAGS = {
    "name": "Name",
    "position": "Position",
    "mobile": "Mobile",
    "email": "Email",
    "biz_mail": "BizMail",
    "alias": "Alias",
    "telephone": "Telephone",
    "address": "Address",
}


def _update_fields(u: User, before: dict, changed: list[str], ids_only: bool) -> dict | None:
    renamed = "userid" in changed
    moved = bool({"department", "main_department", "is_leader_in_dept"} & set(changed))
    f = {"UserID": before["userid"]}
    if renamed:
        f["NewUserID"] = u.userid
    if ids_only:
        # post-2022 通讯录同步 callbacks: update_user only for membership or userid changes, IDs only
        if not (renamed or "department" in changed):
            return None
        f["Department"] = _csv(u.department)
        return f
    if not changed:
        return None
    for attr, tag in UPDATE_TAGS.items():
        if attr in changed:
            f[tag] = getattr(u, attr)
    if "gender" in changed:
        f["Gender"] = int(u.gender)
    if "status" in changed:
        f["Status"] = u.status
    if "direct_leader" in changed:
        f["DirectLeader"] = _csv(u.direct_leader)
    if moved or renamed:
        f["Department"] = _csv(u.department)
        f["MainDepartment"] = u.main_department
        f["IsLeaderInDept"] = _csv(u.is_leader_in_dept)
    return f


def _ids_only(request: Request, sim: Sim) -> bool:
    return _flag(request, "ids_only", sim.cfg.ids_only_callbacks)


async def _notify(request: Request, sim: Sim, change_type: str, fields: dict | None) -> list[dict]:
    if fields is None or not _flag(request, "callback", True):
        return []
    plain = sim.callbacks.change_contact(change_type, fields)
    return [await sim.callbacks.deliver("contacts", plain, f"change_contact:{change_type}")]


@endpoint
async def create_user(request: Request, sim: Sim):
    data = await body_of(request)
    u = sim.directory.add_user(data)
    cbs = await _notify(request, sim, "create_user", _user_fields(u, _ids_only(request, sim)))
    return JSONResponse({"user": sim.directory.user_json(u), "callbacks": cbs}, status_code=201)


@endpoint
async def update_user(request: Request, sim: Sim):
    data = await body_of(request)
    u, before, changed = sim.directory.update_user(request.path_params["userid"], data)
    cbs = await _notify(request, sim, "update_user", _update_fields(u, before, changed, _ids_only(request, sim)))
    return {"user": sim.directory.user_json(u), "changed": changed, "callbacks": cbs}


@endpoint
async def delete_user(request: Request, sim: Sim):
    u = sim.directory.delete_user(request.path_params["userid"])
    cbs = await _notify(request, sim, "delete_user", {"UserID": u.userid})
    return {"deleted": u.userid, "callbacks": cbs}


@endpoint
async def create_department(request: Request, sim: Sim):
    data = await body_of(request)
    d = sim.directory.add_department(data)
    sim.invalidate_visibility()
    fields = (
        {"Id": d.id, "ParentId": str(d.parentid)}
        if _ids_only(request, sim)
        else {"Id": d.id, "Name": d.name, "ParentId": str(d.parentid), "Order": d.order}
    )
    cbs = await _notify(request, sim, "create_party", fields)
    return JSONResponse({"department": _dept_view(sim, d), "callbacks": cbs}, status_code=201)


@endpoint
async def update_department(request: Request, sim: Sim):
    data = await body_of(request)
    d, changed = sim.directory.update_department(_path_int(request, "dept_id"), data)
    sim.invalidate_visibility()
    fields: dict | None = {"Id": d.id}
    if _ids_only(request, sim):
        fields = {"Id": d.id, "ParentId": str(d.parentid)} if "parentid" in changed else None
    else:
        if "name" in changed:
            fields["Name"] = d.name
        if "parentid" in changed:
            fields["ParentId"] = str(d.parentid)
        if len(fields) == 1:
            fields = None  # only order or name_en changed: no event
    cbs = await _notify(request, sim, "update_party", fields)
    return {"department": _dept_view(sim, d), "changed": changed, "callbacks": cbs}


@endpoint
async def delete_department(request: Request, sim: Sim):
    dept_id = _path_int(request, "dept_id")
    d = sim.directory
    target = _int_arg(request, "move_members_to")
    cbs: list[dict] = []
    moved: list[str] = []
    if target is not None:
        if target not in d.departments or target == dept_id:
            raise ControlError(400, "invalid", f"move_members_to {target} is not another existing department")
        if dept_id in d.departments and d.children.get(dept_id):
            raise ControlError(409, "conflict", f"department {dept_id} still has sub-departments")
        for u in list(d.users_in([dept_id])):
            depts = [x for x in u.department if x != dept_id]
            if target not in depts:
                depts.append(target)
            u2, before, changed = d.update_user(u.userid, {"department": depts})
            moved.append(u2.userid)
            cbs += await _notify(
                request, sim, "update_user", _update_fields(u2, before, changed, _ids_only(request, sim))
            )
    dept = d.delete_department(dept_id)
    sim.invalidate_visibility()
    cbs += await _notify(request, sim, "delete_party", {"Id": dept.id})
    return {"deleted": dept.id, "moved_members": moved, "callbacks": cbs}


# -- a member acts in WeCom ------------------------------------------------------------------------------
@endpoint
async def send_as_member(request: Request, sim: Sim):
    data = await body_of(request)
    userid = data.get("userid")
    kind = data.get("type")
    if kind not in EVENT_TYPES:
        raise ControlError(400, "invalid", f"type must be one of {', '.join(EVENT_TYPES)}")
    u = sim.directory.user(userid) if isinstance(userid, str) else None
    if u is None:
        raise ControlError(404, "not_found", f"userid {userid!r} does not exist")
    force = bool(data.get("force"))
    if u.status != 1 and not force:
        raise ControlError(
            409,
            "conflict",
            f"{u.userid} has status {u.status} (not active) and cannot use the app; force=true to send anyway",
        )
    event_fields = None
    if kind == "text":
        content = data.get("content")
        if not isinstance(content, str) or not content:
            raise ControlError(400, "invalid", "content is required for a text message")
        sim.messaging.seq += 1
        msg_id = int(time.time() * 1000) * 1000 + sim.messaging.seq % 1000
        fields = {"MsgType": "text", "Content": content, "MsgId": msg_id}
    elif kind in ("click", "view"):
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise ControlError(400, "invalid", f"key is required for a {kind} event (the button key or URL)")
        fields = {"MsgType": "event", "Event": kind, "EventKey": key}
    elif kind == "enter_agent":
        fields = {"MsgType": "event", "Event": "enter_agent", "EventKey": ""}
    elif kind in ("subscribe", "unsubscribe"):
        fields = {"MsgType": "event", "Event": kind}
    elif kind == "location":
        fields = {
            "MsgType": "event",
            "Event": "LOCATION",
            "Latitude": str(data.get("latitude", "31.2304")),
            "Longitude": str(data.get("longitude", "121.4737")),
            "Precision": "30.0",
            "AppType": "wxwork",
        }
    else:
        task_id = data.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ControlError(400, "invalid", "task_id is required for a card tap")
        try:
            event_fields = sim.messaging.tap(u.userid, task_id, data.get("key"), data.get("selected"), force)
        except LookupError as e:
            raise ControlError(404, "not_found", str(e)) from None
        except PermissionError as e:
            raise ControlError(409, "conflict", str(e)) from None
        fields = {"MsgType": "event", **event_fields}
    plain = sim.callbacks.member_event(u.userid, fields)
    result = await sim.callbacks.deliver("app", plain, kind if kind != "card" else fields["Event"])
    effect = None
    if result.get("reply_fields"):
        effect = sim.messaging.apply_passive_reply(u.userid, result["reply_fields"], event_fields)
    result = dict(result, effect=effect)
    if event_fields:
        result["task_id"], result["response_code_issued"] = event_fields["TaskId"], True
    return result


@endpoint
async def verify_url(request: Request, sim: Sim):
    data = await body_of(request)
    target = data.get("target", "app")
    if target not in ("app", "contacts"):
        raise ControlError(400, "invalid", "target must be app or contacts")
    return await sim.callbacks.verify_url(target)


@endpoint
async def callbacks_log(request: Request, sim: Sim):
    if request.method == "DELETE":
        sim.callbacks.reset()
        return {"cleared": True}
    since = _int_arg(request, "since", 0)
    return {"callbacks": [c for c in sim.callbacks.log if c["seq"] > since], "total": sim.callbacks.seq}


# -- faults and quotas ---------------------------------------------------------------------------------
@endpoint
async def faults(request: Request, sim: Sim):
    if request.method == "POST":
        data = await body_of(request)
        specs = data.get("faults") if "faults" in data else [data]
        if not isinstance(specs, list):
            raise ControlError(400, "invalid", "faults must be a list")
        added = [sim.faults.add(s).public() for s in specs]
        return JSONResponse({"faults": added}, status_code=201)
    if request.method == "DELETE":
        sim.faults.clear()
        return {"faults": []}
    return {"faults": [f.public() for f in sim.faults.rules]}


@endpoint
async def delete_fault(request: Request, sim: Sim):
    fault_id = _path_int(request, "fault_id")
    if not sim.faults.remove(fault_id):
        raise ControlError(404, "not_found", f"no fault {fault_id}")
    return {"removed": fault_id}


@endpoint
async def quotas(request: Request, sim: Sim):
    if request.method == "PATCH":
        sim.quotas.configure(await body_of(request))
    elif request.method == "DELETE":
        sim.quotas.reset()
    return sim.quotas.snapshot()


# -- what wqbot did ---------------------------------------------------------------------------------------
@endpoint
async def calls(request: Request, sim: Sim):
    if request.method == "DELETE":
        sim.clear_calls()
        return {"cleared": True, "total": sim.call_seq}
    return sim.calls_view(
        request.query_params.get("api") or request.query_params.get("path"),
        _int_arg(request, "since", 0),
        _int_arg(request, "limit", 1000),
        _int_arg(request, "errcode"),
    )


@endpoint
async def calls_summary(request: Request, sim: Sim):
    return sim.calls_summary()


@endpoint
async def messages(request: Request, sim: Sim):
    q = request.query_params
    return {
        "messages": sim.messaging.list(
            q.get("userid"),
            q.get("msgtype"),
            q.get("task_id"),
            _int_arg(request, "since", 0),
            _int_arg(request, "limit", 100),
        )
    }


@endpoint
async def cards(request: Request, sim: Sim):
    return {"cards": [c.public(detail=False) for c in sim.messaging.cards.values()]}


@endpoint
async def card(request: Request, sim: Sim):
    c = sim.messaging.cards.get(request.path_params["task_id"])
    if c is None:
        raise ControlError(404, "not_found", f"no card with task_id {request.path_params['task_id']}")
    return c.public(detail=True)


@endpoint
async def menu(request: Request, sim: Sim):
    return {"menu": sim.menu}


@endpoint
async def workbench(request: Request, sim: Sim):
    """The app's 工作台 template and what each member's tile shows (`?userid=` for one)."""
    wb = sim.workbench
    userid = request.query_params.get("userid")
    data = wb["data"] if userid is None else {k: v for k, v in wb["data"].items() if k == userid}
    return {"template": wb["template"], "users": data}


# -- logins ---------------------------------------------------------------------------------------------
@endpoint
async def oauth_code(request: Request, sim: Sim):
    data = await body_of(request)
    scope = data.get("scope", "snsapi_base")
    if scope not in ("snsapi_base", "snsapi_privateinfo"):
        raise ControlError(400, "invalid", "scope must be snsapi_base or snsapi_privateinfo")
    if data.get("userid"):
        u = sim.directory.user(data["userid"])
        if u is None:
            raise ControlError(404, "not_found", f"userid {data['userid']} does not exist")
        return {"code": sim.issue_code(userid=u.userid, scope=scope, via=data.get("via", "oauth"))}
    if data.get("openid"):
        return {"code": sim.issue_code(openid=str(data["openid"]), scope=scope)}
    raise ControlError(400, "invalid", "give userid (a member) or openid (a non-member)")


@endpoint
async def oauth_auto(request: Request, sim: Sim):
    if request.method == "PUT":
        data = await body_of(request)
        if data.get("userid"):
            if sim.directory.user(data["userid"]) is None:
                raise ControlError(404, "not_found", f"userid {data['userid']} does not exist")
            sim.oauth_auto = {"userid": data["userid"]}
        elif data.get("openid"):
            sim.oauth_auto = {"openid": str(data["openid"])}
        else:
            sim.oauth_auto = None
    return {"auto": sim.oauth_auto}


def routes() -> list[Route]:
    R = Route
    return [
        R("/sim", overview, methods=["GET"]),
        R("/sim/config", get_config, methods=["GET"]),
        R("/sim/config", patch_config, methods=["PATCH"]),
        R("/sim/reset", reset, methods=["POST"]),
        R("/sim/clock", clock, methods=["GET", "POST"]),
        R("/sim/tokens/expire", expire_tokens, methods=["POST"]),
        R("/sim/departments", list_departments, methods=["GET"]),
        R("/sim/departments", create_department, methods=["POST"]),
        R("/sim/departments/{dept_id}", get_department, methods=["GET"]),
        R("/sim/departments/{dept_id}", update_department, methods=["PATCH"]),
        R("/sim/departments/{dept_id}", delete_department, methods=["DELETE"]),
        R("/sim/users", list_users, methods=["GET"]),
        R("/sim/users", create_user, methods=["POST"]),
        R("/sim/users/{userid}", get_user, methods=["GET"]),
        R("/sim/users/{userid}", update_user, methods=["PATCH"]),
        R("/sim/users/{userid}", delete_user, methods=["DELETE"]),
        R("/sim/send", send_as_member, methods=["POST"]),
        R("/sim/verify-url", verify_url, methods=["POST"]),
        R("/sim/callbacks", callbacks_log, methods=["GET", "DELETE"]),
        R("/sim/faults", faults, methods=["GET", "POST", "DELETE"]),
        R("/sim/faults/{fault_id}", delete_fault, methods=["DELETE"]),
        R("/sim/quotas", quotas, methods=["GET", "PATCH", "DELETE"]),
        R("/sim/calls", calls, methods=["GET", "DELETE"]),
        R("/sim/calls/summary", calls_summary, methods=["GET"]),
        R("/sim/messages", messages, methods=["GET"]),
        R("/sim/cards", cards, methods=["GET"]),
        R("/sim/cards/{task_id}", card, methods=["GET"]),
        R("/sim/menu", menu, methods=["GET"]),
        R("/sim/workbench", workbench, methods=["GET"]),
        R("/sim/oauth/code", oauth_code, methods=["POST"]),
        R("/sim/oauth/auto", oauth_auto, methods=["GET", "PUT"]),
    ]
