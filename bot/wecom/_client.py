from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from ._errors import (
    RATE_ERRORS,
    RETRYABLE_ERRORS,
    TOKEN_ERRORS,
    APIError,
    TransportError,
    from_response,
)
from ._tokens import LocalTokenStore, TokenStore

log = logging.getLogger("wqbot.wecom")

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_RETRIES = 3  # for -1, HTTP 5xx, timeouts and connection errors
BACKOFF_BASE, BACKOFF_CAP = 0.5, 8.0
RATE_BACKOFF = 15.0  # 45009/45033: wait well into the next window before the single retry
REFRESH_AHEAD = 300  # seconds before expiry a token is renewed


class WeComClient:
    """Thread-safe; one per process. Every call injects the token, handles errcodes, retries."""

    def __init__(self, settings, http: httpx.Client | None = None, tokens: TokenStore | None = None,
                 sleep=time.sleep):
        self.settings = settings
        self.base = settings.wecom_api_base.rstrip("/")
        self.http = http or httpx.Client(timeout=TIMEOUT, headers={"User-Agent": "wqbot"})
        self.tokens = tokens or LocalTokenStore()
        self._sleep = sleep
        self._local = threading.Lock()

    def __repr__(self) -> str:
        return f"WeComClient(base={self.base!r}, corp={self.settings.wecom_corp_id!r})"

    # -- credentials and tokens ---------------------------------------------------------------
    def _secret(self, creds: str) -> str:
        if creds == "contacts" and self.settings.wecom_contacts_secret:
            return self.settings.wecom_contacts_secret
        return self.settings.wecom_app_secret

    def _cache_key(self, creds: str) -> str:
        # Keyed by which secret is in use, not its name: contacts falls back to the app secret.
        kind = "contacts" if creds == "contacts" and self.settings.wecom_contacts_secret else "app"
        return f"wecom:token:{self.settings.wecom_corp_id}:{kind}"

    def token(self, creds: str = "app", stale: str | None = None) -> str:
        """A valid access token for `creds`. `stale`: a token that just failed; drop it only if
        it is still the cached one (another process may have refreshed already)."""
        key = self._cache_key(creds)
        return self.tokens.get_or_fetch(key, lambda: self._gettoken(creds), stale=stale, ahead=REFRESH_AHEAD)

    def _gettoken(self, creds: str) -> tuple[str, float]:
        data = self._send("GET", "/cgi-bin/gettoken",
                          {"corpid": self.settings.wecom_corp_id, "corpsecret": self._secret(creds)}, None,
                          gettoken=True)
        return data["access_token"], float(data.get("expires_in", 7200))

    # -- the one request path ------------------------------------------------------------------
    def call(self, method: str, path: str, *, creds: str = "app", params: dict | None = None,
             json: Any = None) -> dict:
        token = self.token(creds)
        try:
            return self._send(method, path, {**(params or {}), "access_token": token}, json)
        except APIError as e:
            if e.errcode not in TOKEN_ERRORS:
                raise
            log.info("token rejected, refreshing once", extra={"path": path, "errcode": e.errcode})
            token = self.token(creds, stale=token)
            return self._send(method, path, {**(params or {}), "access_token": token}, json)

    def _send(self, method: str, path: str, params: dict, json: Any, gettoken: bool = False) -> dict:
        url = self.base + path
        attempt = 0
        while True:
            try:
                r = self.http.request(method, url, params=params, json=json)
                if r.status_code >= 500:
                    raise TransportError(path, f"HTTP {r.status_code}")
                if r.status_code != 200:
                    raise APIError(-2, f"HTTP {r.status_code}", "unexpected HTTP status from WECOM_API_BASE", path)
                try:
                    data = r.json()
                except ValueError:
                    raise TransportError(path, "answer is not JSON: is WECOM_API_BASE right?") from None
            except httpx.TimeoutException:
                err: Exception = TransportError(path, "timed out")
            except httpx.TransportError as e:
                err = TransportError(path, f"connection failed ({type(e).__name__})")
            except TransportError as e:
                err = e
            else:
                code = int(data.get("errcode", 0) or 0)
                if code == 0:
                    return data
                err = from_response(code, str(data.get("errmsg", "")), path, gettoken=gettoken)
                if code in RATE_ERRORS:
                    if attempt >= 1:
                        raise err
                    attempt += 1
                    log.warning("rate limited, backing off", extra={"path": path, "errcode": code})
                    self._sleep(RATE_BACKOFF * (1 + random.random() / 2))
                    continue
                if code not in RETRYABLE_ERRORS:
                    raise err
            if attempt >= MAX_RETRIES:
                raise err
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt) * (0.5 + random.random() / 2)
            attempt += 1
            log.info("retrying WeCom call", extra={"path": path, "attempt": attempt, "error": str(err)})
            self._sleep(delay)

    # -- departments ----------------------------------------------------------------------------
    def department_list(self, id: int | None = None, *, creds: str = "app") -> list[dict]:
        params = {"id": id} if id is not None else {}
        return self.call("GET", "/cgi-bin/department/list", creds=creds, params=params).get("department", [])

    def department_simplelist(self, id: int | None = None, *, creds: str = "app") -> list[dict]:
        params = {"id": id} if id is not None else {}
        return self.call("GET", "/cgi-bin/department/simplelist", creds=creds, params=params).get("department_id", [])

    def department_get(self, id: int, *, creds: str = "app") -> dict:
        return self.call("GET", "/cgi-bin/department/get", creds=creds, params={"id": id})["department"]

    # -- users ------------------------------------------------------------------------------------
    def user_get(self, userid: str, *, creds: str = "app") -> dict:
        data = self.call("GET", "/cgi-bin/user/get", creds=creds, params={"userid": userid})
        return {k: v for k, v in data.items() if k not in ("errcode", "errmsg")}

    def user_list(self, department_id: int, fetch_child: bool = False, *, creds: str = "app") -> list[dict]:
        return self.call("GET", "/cgi-bin/user/list", creds=creds,
                         params={"department_id": department_id, "fetch_child": int(fetch_child)}).get("userlist", [])

    def user_simplelist(self, department_id: int, fetch_child: bool = False, *, creds: str = "app") -> list[dict]:
        return self.call("GET", "/cgi-bin/user/simplelist", creds=creds,
                         params={"department_id": department_id, "fetch_child": int(fetch_child)}).get("userlist", [])

    def user_list_id(self, limit: int = 10000, *, creds: str = "contacts") -> Iterator[dict]:
        """Every (userid, department) row, one page at a time (only the 通讯录同步 secret may call it)."""
        cursor = ""
        while True:
            body = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            data = self.call("POST", "/cgi-bin/user/list_id", creds=creds, json=body)
            yield from data.get("dept_user", [])
            cursor = data.get("next_cursor") or ""
            if not cursor:
                return

    def user_getuserid(self, mobile: str, *, creds: str = "app") -> str:
        return self.call("POST", "/cgi-bin/user/getuserid", creds=creds, json={"mobile": mobile})["userid"]

    # -- login ------------------------------------------------------------------------------------
    def auth_getuserinfo(self, code: str) -> dict:
        data = self.call("GET", "/cgi-bin/auth/getuserinfo", params={"code": code})
        return {k: v for k, v in data.items() if k not in ("errcode", "errmsg")}

    def auth_getuserdetail(self, user_ticket: str) -> dict:
        data = self.call("POST", "/cgi-bin/auth/getuserdetail", json={"user_ticket": user_ticket})
        return {k: v for k, v in data.items() if k not in ("errcode", "errmsg")}

    # -- messages ---------------------------------------------------------------------------------
    def message_send(self, message: dict) -> dict:
        """Send one app message; `agentid` is filled in. Returns WeCom's answer (invaliduser,
        msgid, response_code…); partial failure is errcode 0 with invaliduser set."""
        return self.call("POST", "/cgi-bin/message/send", json={"agentid": self.settings.wecom_agent_id, **message})

    def update_template_card(self, update: dict) -> dict:
        return self.call("POST", "/cgi-bin/message/update_template_card",
                         json={"agentid": self.settings.wecom_agent_id, **update})

    def message_recall(self, msgid: str) -> dict:
        return self.call("POST", "/cgi-bin/message/recall", json={"msgid": msgid})

    # -- menus and the app ------------------------------------------------------------------------
    def menu_create(self, menu: dict) -> None:
        self.call("POST", "/cgi-bin/menu/create", params={"agentid": self.settings.wecom_agent_id}, json=menu)

    def menu_get(self) -> dict:
        data = self.call("GET", "/cgi-bin/menu/get", params={"agentid": self.settings.wecom_agent_id})
        return {"button": data.get("button", [])}

    def menu_delete(self) -> None:
        self.call("GET", "/cgi-bin/menu/delete", params={"agentid": self.settings.wecom_agent_id})

    def agent_get(self) -> dict:
        data = self.call("GET", "/cgi-bin/agent/get", params={"agentid": self.settings.wecom_agent_id})
        return {k: v for k, v in data.items() if k not in ("errcode", "errmsg")}

    # -- JS-SDK tickets (cached apart from tokens and from each other) ---------------------------
    def jsapi_ticket(self) -> str:
        key = f"wecom:jsapi:{self.settings.wecom_corp_id}"
        return self.tokens.get_or_fetch(key, lambda: self._ticket("/cgi-bin/get_jsapi_ticket", {}), ahead=REFRESH_AHEAD)

    def agent_jsapi_ticket(self) -> str:
        key = f"wecom:agent_jsapi:{self.settings.wecom_corp_id}:{self.settings.wecom_agent_id}"
        return self.tokens.get_or_fetch(key, lambda: self._ticket("/cgi-bin/ticket/get", {"type": "agent_config"}),
                                        ahead=REFRESH_AHEAD)

    def _ticket(self, path: str, params: dict) -> tuple[str, float]:
        data = self.call("GET", path, params=params)
        return data["ticket"], float(data.get("expires_in", 7200))


_clients: dict[tuple, WeComClient] = {}
_clients_lock = threading.Lock()


def client_for(settings) -> WeComClient:
    """The process's client for these settings (tokens are shared across processes by the store)."""
    key = (settings.wecom_api_base, settings.wecom_corp_id, settings.wecom_app_secret, settings.wecom_contacts_secret)
    with _clients_lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = WeComClient(settings)
        return c


def reset_clients() -> None:
    """Forget cached clients (tests that change settings)."""
    with _clients_lock:
        _clients.clear()
