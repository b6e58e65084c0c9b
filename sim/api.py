"""The server API at WeCom's paths (`/cgi-bin/…`), answering in WeCom's JSON shapes.

Every call goes through `handle`: call log → injected faults → method → access token → quota →
secret-kind rules → the API's handler. Handlers raise `WxError` for a non-zero errcode."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response

from .directory import ROOT, Department, DirectoryError
from .errors import WxError, errmsg
from .limits import DEFAULT_ERRMSG, api_name
from .state import Sim

MAX_BODY = 4 * 1024 * 1024


@dataclass
class Call:
    sim: Sim
    params: dict
    body: dict
    kind: str | None  # "app" | "contacts" | None (gettoken)

    def param(self, name: str) -> str | None:
        v = self.params.get(name)
        return v if v not in (None, "") else None


@dataclass
class Spec:
    handler: Callable[[Call], dict]
    methods: tuple
    kinds: tuple  # secret kinds whose token may call it
    contacts_detail: bool = False  # refused (48009) to 通讯录同步 from a "new IP" (2022-08-15 rule)
    wrong_kind_errcode: int = 48002


API: dict[str, Spec] = {}


def api(name: str, methods=("GET",), kinds=("app", "contacts"), contacts_detail=False, wrong_kind_errcode=48002):
    def deco(fn):
        API[name] = Spec(fn, methods, kinds, contacts_detail, wrong_kind_errcode)
        return fn

    return deco


def _json(data: dict, status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type="application/json; charset=UTF-8",
    )


async def handle(request: Request) -> Response:
    sim: Sim = request.app.state.sim
    name = api_name(request.url.path)
    params = dict(request.query_params)
    client_ip = request.client.host if request.client else "127.0.0.1"
    raw = await request.body() if request.method == "POST" else b""
    body_for_log = None
    if raw:
        try:
            body_for_log = json.loads(raw)
        except ValueError:
            body_for_log = raw
    entry = sim.begin_call(request.method, name, params, body_for_log, client_ip)
    t0 = time.perf_counter()

    def finish(response: Response, errcode, fault=None) -> Response:
        entry["errcode"] = errcode
        entry["status"] = response.status_code
        if fault:
            entry["fault"] = fault
        entry["ms"] = round((time.perf_counter() - t0) * 1000, 3)
        sim.end_call(entry)
        return response

    latency, action = sim.faults.pick(name)
    if latency:
        await anyio.sleep(latency / 1000)
        entry["latency_ms"] = latency
    if action is not None:
        kind = action["kind"]
        if kind == "http500":
            return finish(
                Response("<html><body><h1>500 Internal Server Error</h1></body></html>", 500, media_type="text/html"),
                None,
                "http500",
            )
        if kind == "timeout":
            await anyio.sleep(action["hold_seconds"])
            return finish(
                Response("<html><body><h1>504 Gateway Time-out</h1></body></html>", 504, media_type="text/html"),
                None,
                "timeout",
            )
        code = action["errcode"]
        token = params.get("access_token")
        if token and code == 42001:
            sim.expire_token(token)  # so the client's refresh really gets a new token
        elif token and code == 40014:
            sim.forget_token(token)
        if action.get("errmsg"):
            text = action["errmsg"]
        elif code in DEFAULT_ERRMSG:
            text = DEFAULT_ERRMSG[code].format(hint=entry["seq"], ip=action.get("ip", client_ip))
        else:
            text = errmsg(code, client_ip)
        return finish(_json({"errcode": code, "errmsg": text}), code, f"errcode {code}")

    spec = API.get(name)
    if spec is None:
        return finish(
            Response(
                f"sim: no WeCom API at /cgi-bin/{name} (see docs/sim.md)",
                404,
                media_type="text/plain; charset=utf-8",
            ),
            None,
        )
    try:
        if request.method not in spec.methods:
            if "POST" in spec.methods:
                raise WxError(40058, f"{name} is a POST API with a JSON body")
        kind = None
        if name != "gettoken":
            kind = sim.token_kind(params.get("access_token"))
            entry["token"] = kind
        exempt = name in ("auth/getuserinfo", "user/getuserinfo") and sim.code_is_valid(params.get("code"))
        if not exempt and not sim.quotas.allow(name, debug=params.get("debug") == "1"):
            raise WxError(45009, "this API's per-minute/per-hour quota is used up; blocked until the window ends")
        body: dict = {}
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                raise WxError(40058, errmsg="Warning: wrong json format. ") from None
            if not isinstance(body, dict):
                raise WxError(40058, "the body must be a JSON object")
        elif "POST" in spec.methods and request.method == "POST" and name not in ("user/list_id",):
            raise WxError(40063, "the JSON body is empty")
        if kind is not None and kind not in spec.kinds:
            raise WxError(
                spec.wrong_kind_errcode,
                "this secret's token may not call this API (app secret: messages, menus, OAuth; "
                "通讯录同步 secret: user/list_id)",
            )
        if kind == "contacts" and spec.contacts_detail and sim.cfg.contacts_new_ip:
            raise WxError(48009)
        result = spec.handler(Call(sim, params, body, kind))
    except WxError as e:
        text = e.raw_errmsg if e.raw_errmsg is not None else errmsg(e.errcode, client_ip, e.detail)
        return finish(_json({"errcode": e.errcode, "errmsg": text}), e.errcode)
    return finish(_json(result), result.get("errcode", 0))


def ok(**fields) -> dict:
    return {"errcode": 0, "errmsg": "ok", **fields}


def _int(value, errcode: int, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise WxError(errcode, f"{what} must be a number") from None


# -- tokens ----------------------------------------------------------------------------------------
@api("gettoken")
def gettoken(c: Call) -> dict:
    return c.sim.gettoken(c.param("corpid"), c.param("corpsecret"))


# -- departments -----------------------------------------------------------------------------------
def _department(c: Call, value, required: bool) -> int:
    if value is None:
        if required:
            raise WxError(60123, "id is required")
        return ROOT
    dept_id = _int(value, 60123, "id")
    if dept_id not in c.sim.directory.departments:
        raise WxError(60123, f"department {dept_id} does not exist")
    if c.kind == "app" and not c.sim.visible_department(dept_id):
        raise WxError(60011, f"department {dept_id} is outside the app's visible range")
    return dept_id


def _departments(c: Call) -> list[Department]:
    d = c.sim.directory
    if c.param("id") is None and c.kind == "app":
        roots = [x for x in c.sim.cfg.visible_departments if x in d.departments]
        ids: dict[int, None] = {}
        for r in roots:
            for x in d.subtree(r):
                ids[x] = None
        return [d.departments[x] for x in ids]
    return [d.departments[x] for x in d.subtree(_department(c, c.param("id"), False))]


@api("department/list", contacts_detail=True)
def department_list(c: Call) -> dict:
    d = c.sim.directory
    return ok(department=[d.department_json(x) for x in _departments(c)])


@api("department/simplelist")
def department_simplelist(c: Call) -> dict:
    return ok(department_id=[{"id": x.id, "parentid": x.parentid, "order": x.order} for x in _departments(c)])


@api("department/get", contacts_detail=True)
def department_get(c: Call) -> dict:
    d = c.sim.directory
    dept = d.departments[_department(c, c.param("id"), True)]
    return ok(department=d.department_json(dept))


# -- users -------------------------------------------------------------------------------------------
def _user(c: Call, userid: str | None):
    if not userid:
        raise WxError(41009, "userid is required")
    u = c.sim.directory.user(userid)
    if u is None:
        raise WxError(60111, f"userid {userid} not found")
    if c.kind == "app" and not c.sim.visible_user(u):
        raise WxError(60011, f"{userid} is outside the app's visible range")
    return u


def _hide(c: Call) -> bool:
    return c.kind == "app" and c.sim.cfg.hide_private


@api("user/get", contacts_detail=True)
def user_get(c: Call) -> dict:
    u = _user(c, c.param("userid"))
    return ok(**c.sim.directory.user_json(u, _hide(c)))


def _members(c: Call):
    dept = c.param("department_id")
    if dept is None:
        raise WxError(60123, "department_id is required")
    dept_id = _department(c, dept, True)
    d = c.sim.directory
    ids = d.subtree(dept_id) if c.param("fetch_child") == "1" else [dept_id]
    users = d.users_in(ids)
    if c.kind == "app":
        users = [u for u in users if c.sim.visible_user(u)]
    return users


@api("user/simplelist", contacts_detail=True)
def user_simplelist(c: Call) -> dict:
    return ok(userlist=[{"userid": u.userid, "name": u.name, "department": list(u.department)} for u in _members(c)])


@api("user/list", contacts_detail=True)
def user_list(c: Call) -> dict:
    d, hide = c.sim.directory, _hide(c)
    return ok(userlist=[d.user_json(u, hide, listing=True) for u in _members(c)])


@api("user/list_id", methods=("POST",), kinds=("contacts",))
def user_list_id(c: Call) -> dict:
    limit = c.body.get("limit", 10000)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10000:
        raise WxError(40058, "limit must be 1..10000")
    cursor = c.body.get("cursor") or ""
    if not isinstance(cursor, str):
        raise WxError(40058, "cursor must be a string")
    try:
        rows, next_cursor = c.sim.directory.list_id_page(cursor, limit)
    except DirectoryError:
        raise WxError(40058, "invalid cursor") from None
    return ok(next_cursor=next_cursor, dept_user=rows)


@api("user/getuserid", methods=("POST",))
def user_getuserid(c: Call) -> dict:
    mobile = c.body.get("mobile")
    if not isinstance(mobile, str) or not 5 <= len(mobile.encode()) <= 32:
        raise WxError(40058, "mobile must be 5-32 bytes")
    u = c.sim.directory.user_by_mobile(mobile)
    if u is None or (c.kind == "app" and not c.sim.visible_user(u)):
        raise WxError(46004, "no member with this mobile in the app's visible range")
    return ok(userid=u.userid)


@api("user/get_userid_by_email", methods=("POST",))
def user_get_userid_by_email(c: Call) -> dict:
    email = c.body.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise WxError(40058, "email is required")
    u = c.sim.directory.user_by_email(email)
    if u is None or (c.kind == "app" and not c.sim.visible_user(u)):
        raise WxError(46004, "no member with this email in the app's visible range")
    return ok(userid=u.userid)


# -- identity from OAuth / QR-login codes --------------------------------------------------------
def _identity(c: Call) -> dict:
    code = c.sim.consume_code(c.param("code"))
    out: dict = {}
    if code["userid"]:
        u = c.sim.directory.user(code["userid"])
        if u is None:
            # the member left between the tap and the exchange: WeCom then knows only an openid
            out["openid"] = "o" + code["userid"]
            return out
        out["userid"] = u.userid
        if code["scope"] == "snsapi_privateinfo" and c.sim.visible_user(u):
            out["user_ticket"] = c.sim.issue_user_ticket(u.userid)
            out["expires_in"] = c.sim.cfg.user_ticket_ttl
    else:
        out["openid"] = code["openid"]
    return out


@api("auth/getuserinfo", kinds=("app",), wrong_kind_errcode=50001)
def auth_getuserinfo(c: Call) -> dict:
    return ok(**_identity(c))


@api("user/getuserinfo", kinds=("app",), wrong_kind_errcode=50001)
def user_getuserinfo(c: Call) -> dict:
    ident = _identity(c)
    out = {}
    if "userid" in ident:
        out["UserId"] = ident["userid"]
        out["DeviceId"] = ""
    if "openid" in ident:
        out["OpenId"] = ident["openid"]
        out["DeviceId"] = ""
    for k in ("user_ticket", "expires_in"):
        if k in ident:
            out[k] = ident[k]
    return ok(**out)


@api("auth/getuserdetail", methods=("POST",), kinds=("app",), wrong_kind_errcode=50001)
def auth_getuserdetail(c: Call) -> dict:
    ticket = c.body.get("user_ticket")
    t = c.sim.user_tickets.get(ticket) if isinstance(ticket, str) else None
    if t is None or t["expires_at"] <= c.sim.clock.now():
        raise WxError(40058, "invalid or expired user_ticket")
    u = c.sim.directory.user(t["userid"])
    if u is None:
        raise WxError(60111, "the member left")
    full = c.sim.directory.user_json(u)
    out = {k: full[k] for k in ("userid", "gender", "avatar", "qr_code", "mobile", "email", "biz_mail", "address")}
    if not c.sim.cfg.hide_private:
        out["name"] = u.name
    return ok(**out)


# -- messages ------------------------------------------------------------------------------------------
@api("message/send", methods=("POST",), kinds=("app",))
def message_send(c: Call) -> dict:
    return c.sim.messaging.send(c.body)


@api("message/update_template_card", methods=("POST",), kinds=("app",))
def message_update_template_card(c: Call) -> dict:
    return c.sim.messaging.update(c.body)


@api("message/recall", methods=("POST",), kinds=("app",))
def message_recall(c: Call) -> dict:
    return c.sim.messaging.recall(c.body)


# -- menus --------------------------------------------------------------------------------------------
MENU_TYPES = (
    "click",
    "view",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
    "view_miniprogram",
)


def _agent(c: Call) -> None:
    agentid = c.param("agentid")
    if agentid is None or not agentid.isdigit():
        raise WxError(40056, "agentid is required (the app's AgentId)")
    if int(agentid) != c.sim.cfg.agent_id:
        raise WxError(301002, f"agentid {agentid} is not this token's app")


def _blen(s) -> int:
    return len(str(s).encode("utf-8"))


def _menu_leaf(b: dict, sub: bool) -> None:
    t = b.get("type")
    if t not in MENU_TYPES:
        raise WxError(40024 if sub else 40017, f"button type {t!r} is not one of {', '.join(MENU_TYPES)}")
    if t == "view":
        url = b.get("url")
        if not isinstance(url, str) or not url or _blen(url) > 1024:
            raise WxError(40027 if sub else 40020, "a view button needs a url of at most 1024 bytes")
    elif t == "view_miniprogram":
        if not b.get("appid") or not b.get("pagepath"):
            raise WxError(40058, "a view_miniprogram button needs appid and pagepath")
    else:
        key = b.get("key")
        if not isinstance(key, str) or not key or _blen(key) > 128:
            raise WxError(40026 if sub else 40019, f"a {t} button needs a key of at most 128 bytes")


def validate_menu(body: dict) -> None:
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise WxError(40016, "button must hold 1-3 top-level buttons")
    for b in buttons:
        if not isinstance(b, dict):
            raise WxError(40058, "each button is an object")
        name = b.get("name")
        if not isinstance(name, str) or not name:
            raise WxError(41102, "every button needs a name")
        if _blen(name) > 16:
            raise WxError(40018, f"top-level name {name!r} is over 16 bytes")
        if "sub_button" in b:
            subs = b["sub_button"]
            if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
                raise WxError(40023, f"{name!r}: sub_button must hold 1-5 buttons")
            for s in subs:
                if not isinstance(s, dict):
                    raise WxError(40058, "each sub_button is an object")
                if "sub_button" in s:
                    raise WxError(40022, "menus have two levels only")
                sname = s.get("name")
                if not isinstance(sname, str) or not sname:
                    raise WxError(41102, "every button needs a name")
                if _blen(sname) > 40:
                    raise WxError(40025, f"sub-button name {sname!r} is over 40 bytes")
                _menu_leaf(s, True)
        else:
            _menu_leaf(b, False)


@api("menu/create", methods=("POST",), kinds=("app",))
def menu_create(c: Call) -> dict:
    _agent(c)
    validate_menu(c.body)
    c.sim.menu = {"button": c.body["button"]}
    return ok()


@api("menu/get", kinds=("app",))
def menu_get(c: Call) -> dict:
    _agent(c)
    if c.sim.menu is None:
        raise WxError(46003, "the app has no menu")
    return ok(**c.sim.menu)


@api("menu/delete", kinds=("app",))
def menu_delete(c: Call) -> dict:
    _agent(c)
    c.sim.menu = None
    return ok()


# -- the app --------------------------------------------------------------------------------------------
@api("agent/get", kinds=("app",))
def agent_get(c: Call) -> dict:
    _agent(c)
    cfg = c.sim.cfg
    return ok(
        agentid=cfg.agent_id,
        name=cfg.agent_name,
        square_logo_url="https://wework.qpic.cn/wwpic/sim_weiqian_logo/0",
        description="微签电子签：待办提醒、审批卡片与免登录",
        allow_userinfos={"user": [{"userid": u} for u in cfg.visible_users]},
        allow_partys={"partyid": list(cfg.visible_departments)},
        allow_tags={"tagid": []},
        close=0,
        redirect_domain=cfg.redirect_domain,
        report_location_flag=0,
        isreportenter=1,
        home_url=cfg.home_url,
        customized_publish_status=0,
    )


# -- the 工作台 tile (docs/wecom.md, "The 工作台 tile") ------------------------------------------------
WORKBENCH_TYPES = ("normal", "keydata", "image", "list", "webview")
WORKBENCH_USER_PER_MIN = 10  # set_workbench_data per member per app per minute


def _agent_in_body(c: Call) -> None:
    agentid = c.body.get("agentid")
    if isinstance(agentid, str) and agentid.isdigit():
        agentid = int(agentid)
    if not isinstance(agentid, int) or isinstance(agentid, bool):
        raise WxError(40056, "agentid is required in the body (the app's AgentId)")
    if agentid != c.sim.cfg.agent_id:
        raise WxError(301002, f"agentid {agentid} is not this token's app")


def _keydata(value) -> dict:
    items = value.get("items") if isinstance(value, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= 4:
        raise WxError(40058, "keydata.items must hold 1-4 items")
    for i in items:
        if not isinstance(i, dict) or i.get("data") in (None, ""):
            raise WxError(40058, "every keydata item needs data")
    return {"items": items}


@api("agent/set_workbench_template", methods=("POST",), kinds=("app",))
def set_workbench_template(c: Call) -> dict:
    _agent_in_body(c)
    kind = c.body.get("type")
    if kind not in WORKBENCH_TYPES:
        raise WxError(40058, f"type must be one of {', '.join(WORKBENCH_TYPES)}")
    wb = c.sim.workbench
    wb["template"] = {"type": kind, kind: _keydata(c.body.get(kind)) if kind == "keydata" else c.body.get(kind)}
    wb["template"]["replace_user_data"] = bool(c.body.get("replace_user_data"))
    if kind != "keydata" or c.body.get("replace_user_data"):
        wb["data"].clear()
    return ok()


@api("agent/get_workbench_template", methods=("POST",), kinds=("app",))
def get_workbench_template(c: Call) -> dict:
    _agent_in_body(c)
    template = c.sim.workbench["template"] or {"type": "normal", "replace_user_data": False}
    return ok(agentid=c.sim.cfg.agent_id, **template)


@api("agent/set_workbench_data", methods=("POST",), kinds=("app",))
def set_workbench_data(c: Call) -> dict:
    _agent_in_body(c)
    wb = c.sim.workbench
    template = wb["template"]
    if template is None or template["type"] == "normal":
        raise WxError(40058, "the app has no workbench template: call set_workbench_template first")
    kind = c.body.get("type")
    if kind != template["type"]:
        raise WxError(40058, f"type {kind!r} is not the template's type {template['type']!r}")
    userid = c.body.get("userid")
    u = c.sim.directory.user(userid) if isinstance(userid, str) else None
    if u is None:
        raise WxError(60111, f"userid {userid!r} not found")
    value = _keydata(c.body.get(kind)) if kind == "keydata" else c.body.get(kind)
    now = c.sim.clock.now()
    recent = [t for t in wb["calls"].get(u.userid, []) if t > now - 60]
    if len(recent) >= WORKBENCH_USER_PER_MIN:
        raise WxError(45009, f"set_workbench_data for {u.userid}: at most {WORKBENCH_USER_PER_MIN} a minute")
    wb["calls"][u.userid] = [*recent, now]
    wb["data"][u.userid] = {"type": kind, kind: value, "at": now}
    return ok()


@api("get_jsapi_ticket", kinds=("app",))
def get_jsapi_ticket(c: Call) -> dict:
    return c.sim.js_ticket("corp")


@api("ticket/get", kinds=("app",))
def ticket_get(c: Call) -> dict:
    if c.param("type") != "agent_config":
        raise WxError(40058, "type must be agent_config")
    return c.sim.js_ticket("agent_config")


@api("getcallbackip")
def getcallbackip(c: Call) -> dict:
    return ok(ip_list=["127.0.0.1"])


@api("get_api_domain_ip")
def get_api_domain_ip(c: Call) -> dict:
    return ok(ip_list=["127.0.0.1"])
