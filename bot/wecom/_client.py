from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bot.observability import metrics
from settings import Settings

from . import _redact
from ._errors import (
    RATE_ERRORS,
    RETRYABLE_ERRORS,
    TOKEN_ERRORS,
    APIError,
    RateLimited,
    TransportError,
    from_response,
    scrub,
)
from ._ratelimit import Limits, LocalRateLimiter, RedisRateLimiter
from ._tokens import LocalTokenStore, RedisBackend, SQLBackend, TokenStore


def _metrics():

    return metrics


log = logging.getLogger("wqbot.wecom")
_redact.install()

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)  # no reconnect churn at full concurrency
MAX_RETRIES = 3  # for -1, HTTP 5xx, timeouts and connection errors
BACKOFF_BASE, BACKOFF_CAP = 0.5, 8.0
RATE_BACKOFF = 15.0  # 45009/45033: the API is held back this long (+ up to 50 % jitter) before the one retry
REFRESH_AHEAD = 300  # seconds before expiry a token is renewed
RATE_MAX_WAIT = 30.0  # longest a call waits for the client-side rate limiter before RateLimited

# POSTs whose effect a retry could repeat when the first attempt's fate is unknown (read timeout,
# 5xx, dropped connection): retried only when the request provably did not get through.
NOT_IDEMPOTENT = frozenset({"/cgi-bin/message/send", "/cgi-bin/message/update_template_card"})
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def secret_in_use(settings: Settings, creds: str) -> str:
    """The credential set a call for `creds` really uses: "contacts" only when
    WECOM_CONTACTS_SECRET is set (else the app secret stands in). Errors, hints, the directory
    read's mode and `wqbot doctor` all go by this one answer."""
    return "contacts" if creds == "contacts" and settings.wecom_contacts_secret else "app"


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class WeComClient:
    """Thread-safe; one per process (`client_for`). Every call injects the token, passes the rate
    limiter, handles errcodes and retries.

    Built directly, a client keeps its tokens and rate buckets to itself (tests, tools);
    `client_for(settings)` gives the deployment's client, whose tokens and buckets are shared by
    every process (Redis when QUEUE_URL is Redis, else the store)."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.Client | None = None,
        tokens: TokenStore | None = None,
        sleep=time.sleep,
        limiter=None,
        timeout: httpx.Timeout = TIMEOUT,
        rate_max_wait: float = RATE_MAX_WAIT,
    ):
        self.settings = settings
        self.base = settings.wecom_api_base.rstrip("/")
        self.http = http or httpx.Client(
            timeout=timeout, headers={"User-Agent": "wqbot"}, transport=_metrics().wecom_transport(limits=LIMITS)
        )
        self.timeout = timeout
        self.tokens = tokens or LocalTokenStore()
        self.limiter = limiter or LocalRateLimiter(Limits.from_settings(settings))
        self.rate_max_wait = rate_max_wait
        self._sleep = sleep
        corp = settings.wecom_corp_id
        app = _fingerprint(corp, settings.wecom_app_secret)
        contacts = _fingerprint(corp, settings.wecom_contacts_secret) if settings.wecom_contacts_secret else app
        # Keyed by the secret in use (fingerprinted), not its name: contacts falls back to the app
        # secret, and a rotated secret never meets the old secret's token.
        self._token_keys = {
            "app": f"wecom:token:{corp}:app:{app}",
            "contacts": f"wecom:token:{corp}:contacts:{contacts}",
        }
        self._jsapi_key = f"wecom:jsapi:{corp}:{app}"
        self._agent_jsapi_key = f"wecom:agent_jsapi:{corp}:{settings.wecom_agent_id}:{app}"

    def __repr__(self) -> str:
        return f"WeComClient(base={self.base!r}, corp={self.settings.wecom_corp_id!r})"

    # -- credentials and tokens ---------------------------------------------------------------
    def _secret(self, creds: str) -> str:
        return (
            self.settings.wecom_contacts_secret
            if secret_in_use(self.settings, creds) == "contacts"
            else (self.settings.wecom_app_secret)
        )

    def _cache_key(self, creds: str) -> str:
        return self._token_keys["contacts" if creds == "contacts" else "app"]

    def token(self, creds: str = "app", stale: str | None = None) -> str:
        """A valid access token for `creds`. `stale`: a token that just failed; drop it only if
        it is still the cached one (another process may have refreshed already)."""
        return self.tokens.get_or_fetch(
            self._cache_key(creds), lambda: self._gettoken(creds), stale=stale, ahead=REFRESH_AHEAD
        )

    def _gettoken(self, creds: str) -> tuple[str, float]:
        data = self._send(
            "GET",
            "/cgi-bin/gettoken",
            {"corpid": self.settings.wecom_corp_id, "corpsecret": self._secret(creds)},
            None,
            gettoken=True,
            creds=secret_in_use(self.settings, creds),
        )
        token = data.get("access_token")
        if not token:
            raise TransportError("/cgi-bin/gettoken", "the answer has no access_token: is WECOM_API_BASE right?")
        _metrics().token_refresh(creds)
        return token, float(data.get("expires_in", 7200))

    # -- the one request path ------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        creds: str = "app",
        params: dict | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> dict:
        """One API call with the token for `creds`; a token error refreshes the token and retries
        once. `idempotent=False` (default for message/send and update_template_card) retries
        network failures only when the request cannot have reached WeCom."""
        if idempotent is None:
            idempotent = path not in NOT_IDEMPOTENT
        token = self.token(creds)
        used = secret_in_use(self.settings, creds)
        try:
            return self._send(
                method, path, {**(params or {}), "access_token": token}, json, idempotent=idempotent, creds=used
            )
        except APIError as e:
            if e.errcode not in TOKEN_ERRORS:
                raise
            log.info("token rejected, refreshing once", extra={"path": path, "errcode": e.errcode})
            token = self.token(creds, stale=token)
        return self._send(
            method, path, {**(params or {}), "access_token": token}, json, idempotent=idempotent, creds=used
        )

    def _send(
        self,
        method: str,
        path: str,
        params: dict,
        json: Any,
        gettoken: bool = False,
        idempotent: bool = True,
        creds: str = "app",
    ) -> dict:
        url = self.base + path
        limit_key = f"{self.settings.wecom_corp_id}:{path}"
        secrets = [v for k, v in params.items() if k in ("access_token", "corpsecret")]
        attempt = 0
        rate_retried = False
        while True:
            wait = self.limiter.acquire(limit_key, self.rate_max_wait)
            if wait is None:
                raise RateLimited(
                    45009,
                    f"wqbot's own limit for {path} is reached (client-side, not sent)",
                    "calls to this API exceed WECOM_RATE_LIMIT_PER_MIN / WECOM_RATE_LIMIT_PER_HOUR "
                    "(or WeCom asked to back off): retry later",
                    path,
                    retry_after=self.rate_max_wait,
                )
            if wait > 0:
                self._sleep(wait)
            may_have_arrived = True
            try:
                r = self.http.request(method, url, params=params, json=json, timeout=self.timeout)
                if r.status_code >= 500:
                    raise TransportError(path, f"HTTP {r.status_code}")
                if r.status_code != 200:
                    raise APIError(-2, f"HTTP {r.status_code}", "unexpected HTTP status from WECOM_API_BASE", path)
                try:
                    data = r.json()
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    raise TransportError(path, "answer is not a WeCom JSON object: is WECOM_API_BASE right?")
                try:
                    code = int(data.get("errcode", 0) or 0)
                except (TypeError, ValueError):
                    raise TransportError(path, "answer has no numeric errcode: is WECOM_API_BASE right?") from None
            except httpx.TimeoutException as e:
                may_have_arrived = not isinstance(e, _UNSENT)
                err: Exception = TransportError(path, f"timed out ({type(e).__name__})")
            except httpx.TransportError as e:
                may_have_arrived = not isinstance(e, _UNSENT)
                err = TransportError(path, f"connection failed ({type(e).__name__})")
            except TransportError as e:
                err = e
            else:
                if code == 0:
                    return data
                err = from_response(
                    code, scrub(str(data.get("errmsg", "")), secrets), path, gettoken=gettoken, creds=creds
                )
                may_have_arrived = False  # WeCom answered with an error: nothing was done
                if code in RATE_ERRORS:
                    if rate_retried:
                        raise err
                    rate_retried = True
                    delay = RATE_BACKOFF * (1 + random.random() / 2)
                    log.warning(
                        "WeCom rate limit, holding this API back",
                        extra={"path": path, "errcode": code, "delay": round(delay, 1)},
                    )
                    self.limiter.block(limit_key, delay)  # every caller of this API waits, not just this one
                    continue
                if code not in RETRYABLE_ERRORS:
                    raise err
            if attempt >= MAX_RETRIES:
                raise err
            if may_have_arrived and not idempotent:
                raise TransportError(
                    path,
                    f"{err.detail if isinstance(err, TransportError) else err}; not retried "
                    "because WeCom may have acted on it",
                )
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * (0.5 + random.random() / 2)
            attempt += 1
            log.info(
                "retrying WeCom call",
                extra={"path": path, "attempt": attempt, "error": str(err), "delay": round(delay, 2)},
            )
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
        return self.call(
            "GET",
            "/cgi-bin/user/list",
            creds=creds,
            params={"department_id": department_id, "fetch_child": int(fetch_child)},
        ).get("userlist", [])

    def user_simplelist(self, department_id: int, fetch_child: bool = False, *, creds: str = "app") -> list[dict]:
        return self.call(
            "GET",
            "/cgi-bin/user/simplelist",
            creds=creds,
            params={"department_id": department_id, "fetch_child": int(fetch_child)},
        ).get("userlist", [])

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
        msgid, response_code…); partial failure is errcode 0 with invaliduser set. A timeout after
        the request went out is not retried (it may have been delivered): pass
        `enable_duplicate_check` in `message` if the caller retries."""
        return self.call("POST", "/cgi-bin/message/send", json={"agentid": self.settings.wecom_agent_id, **message})

    def update_template_card(self, update: dict) -> dict:
        return self.call(
            "POST", "/cgi-bin/message/update_template_card", json={"agentid": self.settings.wecom_agent_id, **update}
        )

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

    # -- the 工作台 tile (docs/wecom.md, "The 工作台 tile") -----------------------------------------
    def workbench_set_template(self, template: dict) -> None:
        """agent/set_workbench_template: `template` is {"type": "keydata", "keydata": {...}, …}."""
        self.call(
            "POST", "/cgi-bin/agent/set_workbench_template", json={"agentid": self.settings.wecom_agent_id, **template}
        )

    def workbench_get_template(self) -> dict:
        data = self.call(
            "POST", "/cgi-bin/agent/get_workbench_template", json={"agentid": self.settings.wecom_agent_id}
        )
        return {k: v for k, v in data.items() if k not in ("errcode", "errmsg")}

    def workbench_set_data(self, data: dict) -> None:
        """agent/set_workbench_data for one member: {"userid": …, "type": "keydata", "keydata": {...}}."""
        self.call("POST", "/cgi-bin/agent/set_workbench_data", json={"agentid": self.settings.wecom_agent_id, **data})

    # -- JS-SDK tickets (cached apart from tokens and from each other) ---------------------------
    def jsapi_ticket(self) -> str:
        return self.tokens.get_or_fetch(
            self._jsapi_key, lambda: self._ticket("/cgi-bin/get_jsapi_ticket", {}), ahead=REFRESH_AHEAD
        )

    def agent_jsapi_ticket(self) -> str:
        return self.tokens.get_or_fetch(
            self._agent_jsapi_key,
            lambda: self._ticket("/cgi-bin/ticket/get", {"type": "agent_config"}),
            ahead=REFRESH_AHEAD,
        )

    def _ticket(self, path: str, params: dict) -> tuple[str, float]:
        data = self.call("GET", path, params=params)
        if not data.get("ticket"):
            raise TransportError(path, "the answer has no ticket: is WECOM_API_BASE right?")
        return data["ticket"], float(data.get("expires_in", 7200))


# -- the deployment's client --------------------------------------------------------------------------
_clients: dict[tuple, WeComClient] = {}
_redis: dict[str, Any] = {}
_clients_lock = threading.Lock()


def namespace() -> str:
    """The deployment's name in shared Redis keys (the queue's name, so test runs stay apart)."""
    return os.environ.get("WQBOT_QUEUE_NAME", "wqbot")


def _redis_client(url: str):
    client = _redis.get(url)
    if client is None:
        import redis

        client = _redis[url] = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
        )
    return client


def shared_parts(settings: Settings) -> tuple[TokenStore, Any]:
    """The token store and rate limiter every process of this deployment shares."""
    limits = Limits.from_settings(settings)
    if settings.queue_url.startswith(("redis://", "rediss://")):
        r = _redis_client(settings.queue_url)
        return LocalTokenStore(RedisBackend(r, namespace())), RedisRateLimiter(r, namespace(), limits)
    url = settings.database_url
    if url.startswith("sqlite:///:memory:") or url == "sqlite:///":
        return LocalTokenStore(), LocalRateLimiter(limits)  # nothing to share with
    # The embedded setup is one process: its rate limiter needs no sharing.
    return LocalTokenStore(SQLBackend(url)), LocalRateLimiter(limits)


def client_for(settings: Settings) -> WeComClient:
    """The process's client for these settings (tokens are shared across processes by the store)."""
    settings = settings.snapshot()  # the console's values now; a changed secret gets its own client
    key = (
        settings.wecom_api_base,
        settings.wecom_corp_id,
        settings.wecom_app_secret,
        settings.wecom_contacts_secret,
        settings.queue_url,
        settings.database_url,
    )
    with _clients_lock:
        c = _clients.get(key)
        if c is None:
            tokens, limiter = shared_parts(settings)
            c = _clients[key] = WeComClient(settings, tokens=tokens, limiter=limiter)
        return c


def forget_clients(current: Settings) -> int:
    """Drop the clients (and their cached tokens) of secrets other than `current`'s: a secret
    changed on the console. Returns how many were dropped."""
    keep = (current.wecom_corp_id, current.wecom_app_secret, current.wecom_contacts_secret)
    with _clients_lock:
        gone = [k for k in _clients if (k[1], k[2], k[3]) != keep]
        dropped = [_clients.pop(k) for k in gone]
    for c in dropped:
        if isinstance(c.tokens, LocalTokenStore):
            with c.tokens._guard:
                c.tokens._entries.clear()
    return len(dropped)


def reset_clients() -> None:
    """Forget cached clients, and the tokens and rate buckets they shared (tests that change
    settings or fake WeCom anew)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for c in clients:
        if hasattr(c.tokens, "clear"):
            c.tokens.clear()
        if hasattr(c.limiter, "reset"):
            c.limiter.reset()
