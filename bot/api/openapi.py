"""The OpenAPI 3.1 document of `/api/v1/*` and of the webhook wqbot sends, served at
`GET /api/v1/openapi.json` (public: it describes the API and holds no secret or setting value).

Built from the same constants the endpoints check (limits, enums), so the document and the
code change together. tests/api/test_openapi.py checks that every `/api/v1` route is in the
document and every path in it is a route; tests/api/test_fuzz.py runs schemathesis against a
live `wqbot serve` with it. Prose for people: docs/api.md.
"""

from __future__ import annotations

import copy
import functools
from importlib.metadata import version

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.auth.nextpath import MAX_STORED as URL_MAX_BYTES
from bot.notify.request import (
    ID_MAX,
    KEY_MAX,
    KINDS,
    MAX_RECIPIENTS,
    RESULTS,
    TASK_ID_MAX,
    TEXT_MAX,
    TITLE_MAX,
)
from bot.notify.webhook import EVENT as WEBHOOK_EVENT
from bot.notify.webhook import EXPIRED as EXPIRED_EVENT
from store.login import TICKET_TTL

from . import jssdk, org, tickets
from .common import MAX_JSON_BODY

PATH = "/api/v1/openapi.json"

# Strings the API refuses outright: C0 control characters and DEL (never in a valid value).
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f]*$"
# White space as the API trims it (Python's str.strip()), spelled out: regex engines disagree on \s.
_WS = "\\t\\n\\u000b\\f\\r\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_NOT_BLANK = f"[^{_WS}]"  # required text: at least one character that is not white space
_BLANK = f"^[{_WS}]*$"  # an optional text left blank counts as absent
# A path inside the 微签 H5: one leading "/", never "//", no backslash, no control character.
# An absolute http(s) URL of printable ASCII, no backslash, no user info (what jssdk signs at all).
_PAGE_URL = "^[hH][tT][tT][pP][sS]?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,4})?([/?#][\\u0021-\\u005b\\u005d-\\u007e]*)?$"
_H5_PATH = "^/([^/\\\\\\u0000-\\u001f\\u007f][^\\\\\\u0000-\\u001f\\u007f]*)?$"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _line(limit: int, *, required: bool, description: str) -> dict:
    """One line of text (ids, keys): no control characters. Optional ones may be null or blank."""
    s: dict = {"type": "string", "maxLength": limit, "pattern": _NO_CONTROL, "description": description}
    if required:
        return {"allOf": [s, {"pattern": _NOT_BLANK}], "description": description}
    return {"anyOf": [s, {"type": "string", "pattern": _BLANK}, {"type": "null"}], "description": description}


def _text(limit: int, *, required: bool, description: str) -> dict:
    """Free text (titles, descriptions): may hold line breaks. Surrounding white space is trimmed."""
    s: dict = {"type": "string", "maxLength": limit, "description": description}
    if required:
        return {"allOf": [s, {"pattern": _NOT_BLANK}], "description": description}
    return {"anyOf": [s, {"type": "null"}], "description": description}


UNAUTHORIZED = _error("No or a wrong `Authorization: Bearer <WEIQIAN_API_TOKEN>`.")
BAD_REQUEST = _error("The request is malformed; `message` says which field and how to fix it.")
TOO_LARGE = _error(f"The body is larger than {MAX_JSON_BODY} bytes.")


def _notification_request() -> dict:
    recipients = {
        "type": "array",
        "maxItems": MAX_RECIPIENTS,
        "items": {"allOf": [{"type": "string", "maxLength": KEY_MAX, "pattern": _NO_CONTROL}, {"pattern": _NOT_BLANK}]},
        "description": "WeCom userids, or 微签 account keys when SYNC_MATCH_FIELD links accounts "
        "(duplicates count once). Unknown or disabled ones are reported per recipient, not refused.",
    }
    common = {
        "id": _line(ID_MAX, required=True, description="微签's idempotency key: the same id again sends nothing new."),
        "task_id": _line(TASK_ID_MAX, required=True, description="微签's task; the cards of one task change together."),
    }
    card = {
        **common,
        "title": _text(TITLE_MAX, required=True, description="The card's title."),
        "description": _text(TEXT_MAX, required=False, description="The card's text."),
        "initiator": _line(KEY_MAX, required=False, description="Who started the task (userid or account key)."),
        "recipients": {**recipients, "minItems": 1},
        "url": {
            "anyOf": [
                # the limit is in bytes once percent-encoded, which JSON Schema cannot say: this is
                # the bound for plain ASCII paths, the description says the rest
                {"type": "string", "maxLength": URL_MAX_BYTES, "pattern": _H5_PATH},
                {"type": "string", "pattern": _BLANK},
                {"type": "null"},
            ],
            "description": "A path inside the 微签 H5 (e.g. /pages/task/task_detail?id=T-1001), opened "
            f"logged in through /oauth/h5. Not a full URL. At most {URL_MAX_BYTES} bytes once "
            "percent-encoded (a non-ASCII character counts 3 bytes per UTF-8 byte): the login that opens it "
            "carries it, and a longer one is a 400.",
        },
        "deadline": {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "maxLength": 0}, {"type": "null"}],
            "description": "ISO 8601 date-time, e.g. 2026-12-01T18:00:00+08:00; without an offset it is "
            "China time. After it, an open approve/sign task expires. Anything else is refused with 400.",
            "examples": ["2026-12-01T18:00:00+08:00"],
        },
        "remind_before_hours": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 2160,
            "description": "approve/sign with a deadline: remind each recipient this many hours before it "
            "(0: no reminder). Absent: REMIND_BEFORE_HOURS (24).",
        },
    }
    approve_or_sign = {
        "type": "object",
        "title": "approve / sign",
        "description": "`approve`: a 同意/拒绝 button card. `sign`: a card that opens the task in the H5.",
        "properties": {"type": {"enum": ["approve", "sign"]}, **card},
        "required": ["id", "type", "task_id", "title", "recipients"],
    }
    notice = {
        "type": "object",
        "title": "notice",
        "description": "Information only (completed, rejected, copied to you, reminder).",
        "properties": {
            "type": {"const": "notice"},
            **card,
            "task_id": _line(TASK_ID_MAX, required=False, description="微签's task, if the notice is about one."),
        },
        "required": ["id", "type", "title", "recipients"],
    }
    close = {
        "type": "object",
        "title": "close",
        "description": "Ends a task decided or withdrawn elsewhere: every card of it shows the result.",
        "properties": {
            "type": {"const": "close"},
            **common,
            "result": {"enum": list(RESULTS)},
            "recipients": {"anyOf": [recipients, {"type": "null"}], "description": "Optional: not needed to close."},
        },
        "required": ["id", "type", "task_id", "result"],
    }
    return {"oneOf": [approve_or_sign, notice, close]}


def _schemas() -> dict:
    user_fields = {
        "userid": {"type": "string"},
        "name": {"type": "string"},
        "departments": {"type": "array", "items": {"type": "integer"}, "description": "Main department first."},
        "mobile": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "position": {"type": ["string", "null"]},
        "active": {"type": "boolean", "description": "false: left the corp, or outside the app's visible range."},
        "account": {
            "type": ["string", "null"],
            "description": "The linked 微签 account key (SYNC_MATCH_FIELD); null when WeCom hides that field.",
        },
    }
    department = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "parent_id": {"type": ["integer", "null"]},
            "order": {"type": "integer"},
            "active": {"type": "boolean"},
        },
        "required": ["id", "name", "parent_id", "order", "active"],
    }
    return {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "A stable code, e.g. invalid_field, ticket_used."},
                "message": {"type": "string", "description": "What is wrong and what to do, for a person."},
            },
            "required": ["error", "message"],
        },
        "NotificationRequest": _notification_request(),
        "Accepted": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "status": {"$ref": "#/components/schemas/NotificationStatus"}},
            "required": ["id", "status"],
        },
        "NotificationStatus": {
            "enum": ["queued", "held", "sent", "partial", "failed", "done"],
            "description": "queued → sent / partial / failed; done once its task is over; held while "
            "开启企业微信 is off (sent when it is turned on).",
        },
        "Notification": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "type": {"enum": list(KINDS)},
                "status": _ref("NotificationStatus"),
                "task_id": {"type": ["string", "null"]},
                "recipients": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "userid": {"type": "string"},
                            "status": {"enum": ["queued", "sent", "invalid", "failed"]},
                            "account": {"type": "string", "description": "The key 微签 addressed them by."},
                            "reason": {"type": "string", "description": "Why invalid or failed."},
                        },
                        "required": ["userid", "status"],
                    },
                },
                "action": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {
                                "action": {"enum": ["approve", "reject"]},
                                "userid": {"type": "string"},
                                "at": {"type": "string", "format": "date-time"},
                            },
                            "required": ["action", "userid", "at"],
                        },
                        {"type": "null"},
                    ],
                    "description": "The decision taken in chat on this notification's cards, if any.",
                },
                "task_state": {
                    "enum": ["pending", "approved", "rejected", "signed", "withdrawn", "expired", "superseded"],
                    "description": "approve/sign/close only; superseded: a later notification reopened the task.",
                },
                "error": {"type": "string", "description": "Why partial or failed, for the operator."},
            },
            "required": ["id", "type", "status", "task_id", "recipients", "action"],
        },
        "Department": department,
        "Departments": {
            "type": "object",
            "properties": {"departments": {"type": "array", "items": _ref("Department")}},
            "required": ["departments"],
        },
        "User": {"type": "object", "properties": user_fields, "required": list(user_fields)},
        "Users": {
            "type": "object",
            "properties": {
                "users": {"type": "array", "items": _ref("User")},
                "next_cursor": {"type": ["string", "null"], "description": "null on the last page."},
            },
            "required": ["users", "next_cursor"],
        },
        "Change": {
            "type": "object",
            "properties": {
                "seq": {"type": "integer", "minimum": 1},
                "kind": {
                    "enum": [
                        "user.created",
                        "user.updated",
                        "user.renamed",
                        "user.deleted",
                        "department.created",
                        "department.updated",
                        "department.deleted",
                    ]
                },
                "id": {
                    "type": ["string", "integer"],
                    "description": "The userid (user.*) or the department id (department.*).",
                },
                "data": {
                    "type": "object",
                    "description": "The user or department after the change, as in /org/users or "
                    "/org/departments; user.renamed adds old_userid, a rejoin adds reactivated: true.",
                },
                "at": {"type": "string", "format": "date-time"},
            },
            "required": ["seq", "kind", "id", "data", "at"],
        },
        "Changes": {
            "type": "object",
            "properties": {
                "changes": {"type": "array", "items": _ref("Change")},
                "next": {"type": "integer", "minimum": 0, "description": "Pass as `after` on the next poll."},
            },
            "required": ["changes", "next"],
        },
        "TicketRequest": {
            "type": "object",
            "properties": {
                "ticket": {
                    "allOf": [{"type": "string", "maxLength": tickets.MAX_TICKET}, {"pattern": _NOT_BLANK}],
                    "description": "The ticket=… value the login page received.",
                }
            },
            "required": ["ticket"],
        },
        "Identity": {
            "type": "object",
            "properties": {
                "userid": {"type": "string"},
                "name": {"type": "string"},
                "departments": {"type": "array", "items": {"type": "integer"}},
                "account": {"type": ["string", "null"]},
                "via": {"enum": ["h5", "pc"]},
            },
            "required": ["userid", "name", "departments", "account", "via"],
        },
        "JssdkRequest": {
            "type": "object",
            "properties": {
                "url": {
                    "type": "string",
                    "maxLength": jssdk.MAX_URL,
                    "pattern": _PAGE_URL,
                    "description": "The page's full URL (location.href) on PUBLIC_URL's or H5_URL's origin.",
                }
            },
            "required": ["url"],
        },
        "JssdkSignature": {
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "The URL signed: the page's, without #fragment."},
                "config": {
                    "type": "object",
                    "description": "For wx.config.",
                    "properties": {
                        "appId": {"type": "string"},
                        "timestamp": {"type": "integer"},
                        "nonceStr": {"type": "string"},
                        "signature": {"type": "string"},
                    },
                    "required": ["appId", "timestamp", "nonceStr", "signature"],
                },
                "agentConfig": {
                    "type": "object",
                    "description": "For wx.agentConfig.",
                    "properties": {
                        "corpid": {"type": "string"},
                        "agentid": {"type": "integer"},
                        "timestamp": {"type": "integer"},
                        "nonceStr": {"type": "string"},
                        "signature": {"type": "string"},
                    },
                    "required": ["corpid", "agentid", "timestamp", "nonceStr", "signature"],
                },
            },
            "required": ["url", "config", "agentConfig"],
        },
        "TaskAction": {
            "type": "object",
            "properties": {
                "event": {"const": WEBHOOK_EVENT},
                "delivery": {"type": "string", "format": "uuid", "description": "Equals X-Wqbot-Delivery."},
                "notification_id": {"type": "string"},
                "task_id": {"type": "string"},
                "action": {"enum": ["approve", "reject"]},
                "userid": {"type": "string", "description": "Who tapped."},
                "account": {
                    "type": "string",
                    "description": "Present when that recipient was addressed by a 微签 account key.",
                },
                "at": {"type": "string", "format": "date-time"},
            },
            "required": ["event", "delivery", "notification_id", "task_id", "action", "userid", "at"],
        },
        "TaskExpired": {
            "type": "object",
            "properties": {
                "event": {"const": EXPIRED_EVENT},
                "delivery": {"type": "string", "format": "uuid", "description": "Equals X-Wqbot-Delivery."},
                "notification_id": {"type": "string", "description": "The notification that opened the task."},
                "task_id": {"type": "string"},
                "deadline": {"type": "string", "format": "date-time"},
                "at": {"type": "string", "format": "date-time", "description": "When wqbot expired it."},
            },
            "required": ["event", "delivery", "notification_id", "task_id", "deadline", "at"],
        },
    }


def _limit(default: int) -> dict:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": org.MAX_LIMIT, "default": default},
    }


def _paths() -> dict:
    auth_errors = {"401": UNAUTHORIZED}
    return {
        "/api/v1/notifications": {
            "post": {
                "operationId": "postNotification",
                "summary": "Ask wqbot to send cards (or close a task)",
                "description": "Stored and queued in one transaction before the 202. The same `id` again "
                "answers with the first notification's current state and sends nothing.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NotificationRequest")}},
                },
                "responses": {
                    "202": _json("Accepted: stored, the push queued.", _ref("Accepted")),
                    "400": BAD_REQUEST,
                    **auth_errors,
                    "413": TOO_LARGE,
                },
            }
        },
        "/api/v1/notifications/{id}": {
            "get": {
                "operationId": "getNotification",
                "summary": "What happened to a notification",
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "pattern": _NO_CONTROL},
                        "description": "The id the notification was posted with.",
                    }
                ],
                "responses": {
                    "200": _json("The notification, per recipient.", _ref("Notification")),
                    "400": BAD_REQUEST,
                    **auth_errors,
                    "404": _error("No notification with that id."),
                },
            }
        },
        "/api/v1/org/departments": {
            "get": {
                "operationId": "listDepartments",
                "summary": "Every department, departed ones with active=false",
                "responses": {"200": _json("All departments, by id.", _ref("Departments")), **auth_errors},
            }
        },
        "/api/v1/org/users": {
            "get": {
                "operationId": "listUsers",
                "summary": "Members, a page at a time, by userid",
                "parameters": [
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "The previous page's next_cursor (opaque).",
                        "schema": {"type": "string"},
                    },
                    _limit(org.DEFAULT_LIMIT),
                ],
                "responses": {"200": _json("One page.", _ref("Users")), "400": BAD_REQUEST, **auth_errors},
            }
        },
        "/api/v1/org/changes": {
            "get": {
                "operationId": "listChanges",
                "summary": "The directory's change feed after a seq",
                "description": "Poll with `after` = the last answer's `next`. seq increases strictly, and no "
                "change ever appears behind one a reader has already seen.",
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": org.SEQ_MAX, "default": 0},
                    },
                    _limit(org.DEFAULT_LIMIT),
                ],
                "responses": {
                    "200": _json("Changes in seq order.", _ref("Changes")),
                    "400": BAD_REQUEST,
                    **auth_errors,
                },
            }
        },
        "/api/v1/tickets/validate": {
            "post": {
                "operationId": "validateTicket",
                "summary": "Redeem a login ticket, once",
                "description": f"Call from the 微签 backend within {TICKET_TTL} seconds of the login.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TicketRequest")}}},
                "responses": {
                    "200": _json("Who logged in (the first validation only).", _ref("Identity")),
                    "400": BAD_REQUEST,
                    **auth_errors,
                    "404": _error("No such ticket was ever issued."),
                    "410": _error("Used, expired, or the member was disabled since the login."),
                    "413": TOO_LARGE,
                },
            }
        },
        "/api/v1/jssdk/signature": {
            "post": {
                "operationId": "jssdkSignature",
                "summary": "wx.config and wx.agentConfig signatures for a page",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("JssdkRequest")}}},
                "responses": {
                    "200": _json("Pass config to wx.config and agentConfig to wx.agentConfig.", _ref("JssdkSignature")),
                    "400": BAD_REQUEST,
                    **auth_errors,
                    "403": _error("The page is not on PUBLIC_URL's or H5_URL's origin."),
                    "413": TOO_LARGE,
                    "502": _error("WeCom did not issue a JS-SDK ticket; `message` names the cause."),
                },
            }
        },
        PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }


def _webhooks() -> dict:
    hooks = _action_webhook()
    expired = copy.deepcopy(hooks[WEBHOOK_EVENT])
    post = expired["post"]
    post["summary"] = "A task's deadline passed while it was open (wqbot → WEIQIAN_WEBHOOK_URL)"
    post["description"] = (
        "Sent once per task when its deadline passes with nobody having decided; every card of it now "
        "shows 已过期. Signed, retried and deduped like task.action."
    )
    post["parameters"][0]["schema"] = {"const": EXPIRED_EVENT}
    post["requestBody"]["content"]["application/json"]["schema"] = _ref("TaskExpired")
    return {**hooks, EXPIRED_EVENT: expired}


def _action_webhook() -> dict:
    return {
        WEBHOOK_EVENT: {
            "post": {
                "summary": "A task was decided in WeCom chat (wqbot → WEIQIAN_WEBHOOK_URL)",
                "description": (
                    "Sent when the first recipient taps 同意 or 拒绝. Verify the signature on the raw body "
                    "before parsing it, refuse a `t` older than 300 seconds, and dedupe on X-Wqbot-Delivery "
                    "(a retry carries the same id and the same bytes). Answer 2xx once stored. 5xx, 408, "
                    "429 (Retry-After is honoured) and connection errors are retried with backoff for 24 h; "
                    "any other status is final."
                ),
                "parameters": [
                    {"name": "X-Wqbot-Event", "in": "header", "required": True, "schema": {"const": WEBHOOK_EVENT}},
                    {
                        "name": "X-Wqbot-Delivery",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                        "description": "The same on every retry of this delivery.",
                    },
                    {
                        "name": "X-Wqbot-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}(,v0=[0-9a-f]{64})?$"},
                        "description": (
                            't=<unix seconds>,v1=<hex HMAC-SHA256(WEIQIAN_WEBHOOK_SECRET, "<t>." + raw body)>,'
                            "v0=<hex HMAC-SHA256(WEIQIAN_WEBHOOK_SECRET, raw body)>. Verify v1 (constant-time "
                            "compare) and refuse t older than 300 s. v0 is the previous, body-only signature, "
                            "kept for one release."
                        ),
                        "example": "t=1767225600,v1=5d8f…,v0=9a1c…",
                    },
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TaskAction")}}},
                "responses": {
                    "2XX": {"description": "Stored: not sent again."},
                    "default": {"description": "5xx, 408 or 429: retried with backoff; anything else is final."},
                },
            }
        }
    }


@functools.cache
def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wqbot API for 微签",
            "version": version("wqbot"),
            "description": "What the 微签 backend calls on wqbot, and the webhook wqbot sends to 微签. "
            "Every /api/v1 call except this document needs `Authorization: Bearer <WEIQIAN_API_TOKEN>`. "
            'Errors are JSON {"error", "message"} with a 4xx status. Guide with curl and Java: docs/api.md.',
        },
        "servers": [{"url": "/", "description": "wqbot's PUBLIC_URL"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "webhooks": _webhooks(),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "WEIQIAN_API_TOKEN"},
            },
            "schemas": _schemas(),
        },
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(document())


def routes(settings) -> list[Route]:
    return [Route(PATH, openapi, methods=["GET"])]
