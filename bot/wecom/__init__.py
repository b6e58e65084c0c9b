"""WeCom server API client: the one place that handles tokens, retries, quotas and errcodes.

    from bot.wecom import client_for
    wecom = client_for(settings)           # one per process and settings
    user = wecom.user_get("zhangsan")      # dict, WeCom's fields
    for row in wecom.user_list_id():       # {"userid", "department"}, cursor paging, lazy
        ...

Credential sets: "app" (WECOM_APP_SECRET) and "contacts" (WECOM_CONTACTS_SECRET, falling back
to the app secret when unset). Each method uses the right one; pass `creds=` to override.

Tokens and JS-SDK tickets (`_tokens.py`) are cached per credential set and shared by every process
of the deployment: in Redis when QUEUE_URL is Redis, else in the store's `key_value` table. One
caller renews a token ahead of expiry (single flight across threads and processes); a call that
gets 40014/42001/40001 drops that token (only if it is still the cached one) and retries once.
If the shared cache is down each process keeps its own tokens and logs that once.

Every call passes a client-side rate limiter (`_ratelimit.py`): token buckets per API path per
corp whose ceilings (WECOM_RATE_LIMIT_PER_MIN=8000, WECOM_RATE_LIMIT_PER_HOUR=120000 for any
rolling window) sit under WeCom's 10,000/min and 150,000/h; shared through Redis when QUEUE_URL
is Redis. Retries: -1, HTTP 5xx, timeouts and connection errors up to 3 times with capped
exponential backoff and jitter (message/send and update_template_card only when the request
cannot have arrived); 45009/45033 hold the API back 15-22 s for every caller, then retry once;
every other errcode is raised at once. Every request has a timeout (10 s, connect 5 s). Tokens
and secrets never appear in logs (httpx's request lines are redacted, `_redact.py`), exception
text or reprs.

Exception tree::

    WeComError                         anything that went wrong talking to WeCom (.retryable)
    ├── TransportError                 timeout, connection refused, HTTP 5xx (retried first)
    └── APIError(errcode, errmsg, hint)   WeCom answered with a non-zero errcode (.is_config_error)
        ├── TokenInvalid               40014 / 42001 / 40001 from a call (after the one retry)
        ├── BadCredentials             gettoken refused the corp id or secret (40001, 40013)
        ├── RateLimited(retry_after)   45009 / 45033: a quota window is full (also wqbot's own limiter)
        ├── IPNotAllowed(ip)           60020: add `ip` to 企业可信IP
        ├── NoPrivilege                48002 / 48009 / 60011 / 50001 / 301002 / 60021 / 50002 / 50003
        ├── NotFound                   60111 / 46004 / 60123 / 60003 / 46003
        ├── InvalidCode                40029: the OAuth/login code was used or expired
        └── (APIError itself)          every other errcode

`hint` says what to change (which setting, which console page); `str(e)` is path, errcode,
errmsg and hint.
"""

from ._client import WeComClient, client_for, forget_clients, reset_clients, secret_in_use
from ._errors import (
    SECRET_PAGE,
    SECRET_VARIABLE,
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
from ._ratelimit import Limits

__all__ = [
    "APIError",
    "BadCredentials",
    "IPNotAllowed",
    "InvalidCode",
    "Limits",
    "NoPrivilege",
    "NotFound",
    "RateLimited",
    "TokenInvalid",
    "TransportError",
    "WeComClient",
    "WeComError",
    "client_for",
    "forget_clients",
    "reset_clients",
    "secret_in_use",
    "SECRET_PAGE",
    "SECRET_VARIABLE",
]
