from __future__ import annotations

import re


class WeComError(Exception):
    """Base of every client error. str() never contains a token or secret."""

    #: True when trying the same call again later can succeed (busy, quota, network).
    retryable = False

    def __reduce__(self):
        # copy/pickle keep the attributes (the subclasses' __init__ take other arguments than args)
        return _rebuild, (type(self), self.args, self.__dict__.copy())


def _rebuild(cls, args, state):
    e = cls.__new__(cls)
    Exception.__init__(e, *args)
    e.__dict__.update(state)
    return e


class TransportError(WeComError):
    retryable = True

    def __init__(self, path: str, detail: str):
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, detail


class APIError(WeComError):
    #: the secret whose token made the call: "app" (WECOM_APP_SECRET) or "contacts"
    #: (WECOM_CONTACTS_SECRET); the hint names that secret's console page
    creds = "app"

    def __init__(self, errcode: int, errmsg: str, hint: str = "", path: str = ""):
        self.errcode, self.errmsg, self.hint, self.path = errcode, errmsg, hint, path
        text = f"{path}: errcode {errcode}: {errmsg}" if path else f"errcode {errcode}: {errmsg}"
        super().__init__(text + (f" — {hint}" if hint else ""))

    @property
    def retryable(self) -> bool:
        return self.errcode in RETRYABLE_ERRORS or self.errcode in RATE_ERRORS

    @property
    def is_config_error(self) -> bool:
        """An operator must change a setting or the WeCom console; retrying cannot help."""
        return self.errcode in CONFIG_ERRORS


class TokenInvalid(APIError):
    @property
    def retryable(self) -> bool:
        # raised only after the one refresh also met a rejected token (another expiry in between,
        # or a refresh that raced it): a later try with the then-current token can succeed
        return True


class BadCredentials(APIError):
    @property
    def is_config_error(self) -> bool:
        return True


class RateLimited(APIError):
    def __init__(self, errcode, errmsg, hint="", path="", retry_after: float | None = None):
        #: seconds after which a new attempt is reasonable (None: unknown)
        self.retry_after = retry_after
        super().__init__(errcode, errmsg, hint, path)


class IPNotAllowed(APIError):
    def __init__(self, errcode, errmsg, hint="", path="", ip: str | None = None):
        self.ip = ip
        super().__init__(errcode, errmsg, hint, path)


class NoPrivilege(APIError):
    pass


class NotFound(APIError):
    pass


class InvalidCode(APIError):
    pass


TOKEN_ERRORS = {40014, 42001, 40001}
RATE_ERRORS = {45009, 45033}
RETRYABLE_ERRORS = {-1}
# Errors only an operator can fix (settings, 应用管理 console); never retried, alerting material.
CONFIG_ERRORS = {40001, 40013, 40056, 48002, 48009, 50001, 50003, 60011, 60020, 301002, 80001, 85005}

_CLASSES = {
    40014: TokenInvalid,
    42001: TokenInvalid,
    40001: TokenInvalid,
    45009: RateLimited,
    45033: RateLimited,
    60020: IPNotAllowed,
    48002: NoPrivilege,
    48009: NoPrivilege,
    60011: NoPrivilege,
    50001: NoPrivilege,
    301002: NoPrivilege,
    60021: NoPrivilege,
    50002: NoPrivilege,
    50003: NoPrivilege,
    60111: NotFound,
    46004: NotFound,
    60123: NotFound,
    60003: NotFound,
    46003: NotFound,
    40029: InvalidCode,
}

_HINTS = {
    -1: "WeCom is busy; the call was retried with backoff",
    40001: "the secret is wrong or was rotated: copy it again from 应用管理 → 自建应用 → Secret "
    "(WECOM_APP_SECRET) or 管理工具 → 通讯录同步 (WECOM_CONTACTS_SECRET)",
    40003: "the userid is not valid (1-64 letters, digits, _-@.): check the value sent",
    40013: "WECOM_CORP_ID is wrong: copy 企业ID from 我的企业 → 企业信息",
    40014: "the access token was not accepted; a fresh one was fetched once",
    42001: "the access token expired; a fresh one was fetched once",
    40029: "the login code was already used or is older than 5 minutes: start the login again",
    40056: "WECOM_AGENT_ID is wrong: copy AgentId from 应用管理 → 自建应用",
    40058: "WeCom refused the request's parameters (bad JSON, too long, wrong method or another app's msgid)",
    41001: "the access token was missing from the request",
    42052: "a message can only be recalled within 24 hours of sending",
    45009: "a WeCom quota window is full: calls are backing off until it ends "
    "(lower the call rate, or WECOM_RATE_LIMIT_PER_MIN / WECOM_RATE_LIMIT_PER_HOUR)",
    45033: "too many concurrent calls: calls are backing off",
    46003: "the app has no menu yet",
    46004: "no member has this mobile number (or the member is outside the app's 可见范围)",
    48002: "this secret may not call this API: use the app secret for messages/menus/OAuth, "
    "the 通讯录同步 secret for user/list_id",
    48009: "the 通讯录同步 secret may not read details from this server's IP (2022-08-15 rule): "
    "sync falls back to department/simplelist + user/list_id + user/get with the app secret; "
    "or widen the app's 可见范围 under 应用管理 → 自建应用",
    50001: "redirect/trusted domain or token mismatch: set 可信域名 under 应用管理 → 自建应用 → "
    "网页授权及JS-SDK to PUBLIC_URL's host, and consume codes with the app secret",
    50002: "the member is outside the app's 可见范围: widen it under 应用管理 → 自建应用",
    50003: "the app is disabled: enable it under 应用管理 → 自建应用",
    60003: "the department does not exist (deleted, or outside the app's 可见范围)",
    60011: "no privilege for this member/department: widen the app's 可见范围 under 应用管理 → 自建应用, "
    "or check that WECOM_CONTACTS_SECRET is the 通讯录同步 secret",
    60020: "add this server's IP to 企业可信IP under 应用管理 → 自建应用 → 企业可信IP (takes about a minute)",
    60021: "the userid is outside the app's 可见范围: widen it under 应用管理 → 自建应用",
    60111: "the userid does not exist (left, deleted or outside the visible range)",
    60123: "the department does not exist (deleted, or outside the app's 可见范围)",
    80001: "the 可信域名 is wrong or has no ICP filing: fix it under 应用管理 → 自建应用 → 网页授权及JS-SDK",
    81013: "every recipient was invalid: check the userids and the app's 可见范围",
    82001: "the message names no recipient: touser, toparty and totag are all empty",
    85005: "the 可信域名's ownership is not verified: upload the check file under 应用管理 → 自建应用 → 网页授权及JS-SDK",
    301002: "the token belongs to another app: WECOM_APP_SECRET and WECOM_AGENT_ID must be the same app's",
}

# Where each secret lives in the WeCom admin console: a hint names the page of the secret the
# failing call actually used (a 60020 on a 通讯录同步 call is fixed under 通讯录同步, not the app).
SECRET_VARIABLE = {"app": "WECOM_APP_SECRET", "contacts": "WECOM_CONTACTS_SECRET"}
SECRET_PAGE = {"app": "应用管理 → 自建应用", "contacts": "管理工具 → 通讯录同步"}

_IP = re.compile(r"from ip:?\s*([0-9a-fA-F:.]+)")


def parse_ip(errmsg: str) -> str | None:
    m = _IP.search(errmsg or "")
    return m.group(1).rstrip(".,") if m else None


def hint_for(errcode: int, errmsg: str = "", creds: str = "app") -> str:
    """What to change for `errcode`, naming the console page of the secret in use (`creds`)."""
    creds = "contacts" if creds == "contacts" else "app"
    page, variable = SECRET_PAGE[creds], SECRET_VARIABLE[creds]
    if errcode == 60020:
        ip = parse_ip(errmsg) or "this server's public IP"
        return f"add {ip} to 企业可信IP under {page} → 企业可信IP (takes about a minute; the call used {variable})"
    if errcode == 40001:
        return f"{variable} is wrong or was reset: copy it again from {page} → Secret (查看)"
    return _HINTS.get(errcode, "")


def from_response(errcode: int, errmsg: str, path: str = "", gettoken: bool = False, creds: str = "app") -> APIError:
    hint = hint_for(errcode, errmsg, creds)
    err: APIError
    if gettoken and errcode in (40001, 40013, 40056):
        err = BadCredentials(errcode, errmsg, hint, path)
    else:
        cls = _CLASSES.get(errcode, APIError)
        if cls is IPNotAllowed:
            err = IPNotAllowed(errcode, errmsg, hint, path, ip=parse_ip(errmsg))
        elif cls is RateLimited:
            err = RateLimited(errcode, errmsg, hint, path, retry_after=60.0)
        else:
            err = cls(errcode, errmsg, hint, path)
    err.creds = "contacts" if creds == "contacts" else "app"
    return err


def scrub(text: str, secrets) -> str:
    """`text` with every value of `secrets` (tokens, secrets) masked."""
    for s in secrets:
        if s and s in text:
            text = text.replace(s, "****")
    return text
