"""WeCom server API client: the one place that handles tokens, retries and errcodes.

    from bot.wecom import client_for
    wecom = client_for(settings)           # one per process and settings
    user = wecom.user_get("zhangsan")      # dict, WeCom's fields
    for row in wecom.user_list_id():       # {"userid", "department"}, cursor paging, lazy
        ...

Credential sets: "app" (WECOM_APP_SECRET) and "contacts" (WECOM_CONTACTS_SECRET, falling back
to the app secret when unset). Each method uses the right one; pass `creds=` to override.

Exception tree::

    WeComError                         anything that went wrong talking to WeCom
    ├── TransportError                 timeout, connection refused, HTTP 5xx (retried first)
    └── APIError(errcode, errmsg, hint)   WeCom answered with a non-zero errcode
        ├── TokenInvalid               40014 / 42001 / 40001 from a call (after the one retry)
        ├── BadCredentials             gettoken refused the corp id or secret (40001, 40013)
        ├── RateLimited                45009 / 45033: a quota window is full
        ├── IPNotAllowed(ip)           60020: add `ip` to 企业可信IP
        ├── NoPrivilege                48002 / 48009 / 60011 / 50001 / 301002 / 60021 / 50002
        ├── NotFound                   60111 / 46004 / 60123 / 60003 / 46003
        ├── InvalidCode                40029: the OAuth/login code was used or expired
        └── (APIError itself)          every other errcode
"""
from ._client import WeComClient, client_for, reset_clients
from ._errors import (
    APIError,
    BadCredentials,
    InvalidCode,
    IPNotAllowed,
    NoPrivilege,
    NotFound,
    RateLimited,
    TokenInvalid,
    TransportError,
    WeComError,
)

__all__ = [
    "APIError",
    "BadCredentials",
    "IPNotAllowed",
    "InvalidCode",
    "NoPrivilege",
    "NotFound",
    "RateLimited",
    "TokenInvalid",
    "TransportError",
    "WeComClient",
    "WeComError",
    "client_for",
    "reset_clients",
]
