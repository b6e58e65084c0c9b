"""The emulated corp's whole state: directory, access tokens, OAuth codes, JS-SDK tickets,
menu, messages and cards, quotas, faults, and the log of every API call received.

One `Sim` per app. The ASGI app runs on one event loop and handlers do not await in the middle
of a state change, so no locks are needed."""

from __future__ import annotations

import secrets
import time
from collections import deque

from .callbacks import Callbacks
from .config import SimConfig
from .directory import ROOT, Directory, User
from .errors import WxError
from .limits import Faults, Quotas
from .messages import Messaging

MASKED_PARAMS = ("access_token", "corpsecret", "code")
MASKED_BODY = ("response_code", "user_ticket")
BODY_LOG_LIMIT = 4096


def mask(value) -> str:
    v = str(value)
    return "****" + v[-2:] if len(v) > 8 else "****"


class Clock:
    """Wall time plus an offset tests can advance (tokens, codes, quotas and tickets age by it)."""

    def __init__(self):
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Token:
    __slots__ = ("value", "kind", "expires_at")

    def __init__(self, value: str, kind: str, expires_at: float):
        self.value, self.kind, self.expires_at = value, kind, expires_at


class Sim:
    def __init__(self, cfg: SimConfig | None = None, directory: Directory | None = None):
        self.cfg = cfg or SimConfig()
        self.clock = Clock()
        t0 = time.perf_counter()
        self.directory = directory or Directory.generate(
            self.cfg.users, self.cfg.departments, self.cfg.seed, self.cfg.corp_name, self.cfg.mail_domain
        )
        self.generated_in = time.perf_counter() - t0
        self.quotas = Quotas(self.cfg, self.clock)
        self.faults = Faults(self.cfg, self.cfg.seed)
        self.messaging = Messaging(self)
        self.callbacks = Callbacks(self)
        self._clear_session_state()
        self.calls: deque[dict] = deque(maxlen=self.cfg.call_log_max)
        self.call_seq = 0
        self.api_counts: dict[str, dict] = {}  # exact per-API counts, even after the log has rotated
        self.current_call: dict | None = None
        self._visible: set[int] | None | bool = False  # False: not computed yet

    def _clear_session_state(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.current_tokens: dict[str, str] = {}
        self.codes: dict[str, dict] = {}
        self.user_tickets: dict[str, dict] = {}
        self.js_tickets: dict[str, tuple[str, float]] = {}
        self.menu: dict | None = None
        # the 工作台: the app's template, each member's data, set_workbench_data times per member
        self.workbench: dict = {"template": None, "data": {}, "calls": {}}
        self.oauth_auto: dict | None = None

    def reset(self, users: int | None = None, departments: int | None = None, seed: int | None = None) -> None:
        """A fresh corp: regenerate the directory and forget tokens, codes, messages, faults and calls."""
        if users is not None:
            self.cfg.users = users
        if departments is not None:
            self.cfg.departments = departments
        if seed is not None:
            self.cfg.seed = seed
        t0 = time.perf_counter()
        self.directory = Directory.generate(
            self.cfg.users, self.cfg.departments, self.cfg.seed, self.cfg.corp_name, self.cfg.mail_domain
        )
        self.generated_in = time.perf_counter() - t0
        self._clear_session_state()
        self.messaging.reset()
        self.callbacks.reset()
        self.quotas.reset()
        self.faults.clear()
        self.clear_calls()
        self.call_seq = 0
        self.clock.offset = 0.0
        self.invalidate_visibility()

    # -- visible range ----------------------------------------------------------------------
    def invalidate_visibility(self) -> None:
        self._visible = False

    def _visible_departments(self) -> set[int] | None:
        if self._visible is False:
            roots = self.cfg.visible_departments
            if ROOT in roots:
                self._visible = None
            else:
                out: set[int] = set()
                for d in roots:
                    if d in self.directory.departments:
                        out.update(self.directory.subtree(d))
                self._visible = out
        return self._visible  # type: ignore[return-value]

    def visible_department(self, dept_id: int) -> bool:
        vis = self._visible_departments()
        return vis is None or dept_id in vis

    def visible_user(self, u: User) -> bool:
        vis = self._visible_departments()
        if vis is None:
            return True
        return u.userid in self.cfg.visible_users or any(d in vis for d in u.department)

    # -- access tokens ----------------------------------------------------------------------------
    def gettoken(self, corpid: str | None, secret: str | None) -> dict:
        if not corpid:
            raise WxError(41002, "corpid is required")
        if not secret:
            raise WxError(41004, "corpsecret is required")
        if not secrets.compare_digest(corpid.encode(), self.cfg.corp_id.encode()):
            raise WxError(40013, "this corpid is not the emulated corp's (WECOM_CORP_ID)")
        if self.cfg.app_secret and secrets.compare_digest(secret.encode(), self.cfg.app_secret.encode()):
            kind = "app"
        elif self.cfg.contacts_secret and secrets.compare_digest(secret.encode(), self.cfg.contacts_secret.encode()):
            kind = "contacts"
        else:
            raise WxError(40001, "the secret matches neither the app's nor 通讯录同步's")
        now = self.clock.now()
        current = self.current_tokens.get(kind)
        tok = self.tokens.get(current) if current else None
        if tok is None or tok.expires_at <= now:
            # WeCom returns the same token while it is valid (docs/wecom.md, "Tokens"), a new one after
            value = secrets.token_urlsafe(96)
            tok = Token(value, kind, now + self.cfg.token_expires_in)
            self.tokens[value] = tok
            self.current_tokens[kind] = value
        return {
            "errcode": 0,
            "errmsg": "ok",
            "access_token": tok.value,
            "expires_in": max(1, int(tok.expires_at - now)),
        }

    def token_kind(self, value: str | None) -> str:
        if not value:
            raise WxError(41001, "put access_token in the query string")
        tok = self.tokens.get(value)
        if tok is None:
            raise WxError(40014)
        if tok.expires_at <= self.clock.now():
            raise WxError(42001)
        return tok.kind

    def expire_tokens(self, kind: str | None = None) -> int:
        now = self.clock.now()
        n = 0
        for tok in self.tokens.values():
            if (kind is None or tok.kind == kind) and tok.expires_at > now:
                tok.expires_at = now - 1
                n += 1
        return n

    def expire_token(self, value: str) -> None:
        tok = self.tokens.get(value)
        if tok is not None:
            tok.expires_at = min(tok.expires_at, self.clock.now() - 1)

    def forget_token(self, value: str) -> None:
        tok = self.tokens.pop(value, None)
        if tok is not None and self.current_tokens.get(tok.kind) == value:
            del self.current_tokens[tok.kind]

    # -- OAuth / QR-login codes -------------------------------------------------------------------
    def issue_code(
        self, userid: str | None = None, openid: str | None = None, scope: str = "snsapi_base", via: str = "oauth"
    ) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = {
            "userid": userid,
            "openid": openid,
            "scope": scope,
            "via": via,
            "at": self.clock.now(),
            "used": False,
        }
        return code

    def code_is_valid(self, code: str | None) -> bool:
        c = self.codes.get(code or "")
        return bool(c) and not c["used"] and self.clock.now() - c["at"] <= self.cfg.code_ttl

    def consume_code(self, code: str | None) -> dict:
        if not code:
            raise WxError(41008, "code is required")
        c = self.codes.get(code)
        if c is None:
            raise WxError(40029, "unknown code")
        if c["used"]:
            raise WxError(40029, "this code was already used (each code is single-use)")
        if self.clock.now() - c["at"] > self.cfg.code_ttl:
            c["used"] = True
            raise WxError(40029, "this code expired (codes live 5 minutes)")
        c["used"] = True
        return c

    def issue_user_ticket(self, userid: str) -> str:
        t = secrets.token_urlsafe(64)
        self.user_tickets[t] = {"userid": userid, "expires_at": self.clock.now() + self.cfg.user_ticket_ttl}
        return t

    # -- JS-SDK tickets ------------------------------------------------------------------------
    def js_ticket(self, kind: str) -> dict:
        now = self.clock.now()
        cur = self.js_tickets.get(kind)
        if cur is None or cur[1] <= now:
            cur = (secrets.token_urlsafe(64), now + 7200)
            self.js_tickets[kind] = cur
        return {"errcode": 0, "errmsg": "ok", "ticket": cur[0], "expires_in": max(1, int(cur[1] - now))}

    # -- the call log ----------------------------------------------------------------------------
    def begin_call(self, method: str, api: str, params: dict, body, client_ip: str) -> dict:
        self.call_seq += 1
        shown = {k: (mask(v) if k in MASKED_PARAMS else v) for k, v in params.items()}
        entry = {
            "seq": self.call_seq,
            "at": round(self.clock.now(), 3),
            "method": method,
            "path": "/cgi-bin/" + api,
            "api": api,
            "params": shown,
            "body": _log_body(body),
            "token": None,
            "errcode": None,
            "status": None,
            "fault": None,
            "ms": None,
            "ip": client_ip,
        }
        self.calls.append(entry)
        self.current_call = entry
        return entry

    def end_call(self, entry: dict) -> None:
        s = self.api_counts.get(entry["api"])
        if s is None:
            s = self.api_counts[entry["api"]] = {"calls": 0, "errors": {}, "faults": 0}
        s["calls"] += 1
        key = None
        if entry["errcode"] not in (0, None):
            key = str(entry["errcode"])
        elif entry["status"] not in (200, None):
            key = f"http {entry['status']}"
        if key:
            s["errors"][key] = s["errors"].get(key, 0) + 1
        if entry["fault"]:
            s["faults"] += 1
        if self.current_call is entry:
            self.current_call = None

    def clear_calls(self) -> None:
        self.calls.clear()
        self.api_counts.clear()

    def annotate(self, **fields) -> None:
        if self.current_call is not None:
            self.current_call.update(fields)

    def calls_view(self, api: str | None = None, since: int = 0, limit: int = 1000, errcode: int | None = None) -> dict:
        name = api.strip().lstrip("/") if api else None
        if name and name.startswith("cgi-bin/"):
            name = name[8:]
        out = []
        for c in self.calls:
            if c["seq"] <= since or (name and c["api"] != name) or (errcode is not None and c["errcode"] != errcode):
                continue
            out.append(c)
            if len(out) >= limit:
                break
        return {
            "calls": out,
            "total": self.call_seq,
            "kept": len(self.calls),
            "next_since": out[-1]["seq"] if out else since,
        }

    def calls_summary(self) -> dict:
        return {"total": sum(s["calls"] for s in self.api_counts.values()), "apis": self.api_counts}


def _log_body(body):
    if body is None:
        return None
    if isinstance(body, dict):
        shown = {k: (mask(v) if k in MASKED_BODY and v else v) for k, v in body.items()}
        import json

        text = json.dumps(shown, ensure_ascii=False)
        if len(text) > BODY_LOG_LIMIT:
            return {
                "_truncated_bytes": len(text.encode()),
                **{k: v for k, v in shown.items() if k in ("msgtype", "agentid", "cursor", "limit")},
            }
        return shown
    return {"_raw_bytes": len(body)}
