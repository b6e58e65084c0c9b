"""The admin console's session: a cookie signed by itsdangerous (HMAC-SHA256, a key derived from
SECRET_KEY per purpose). It holds who logged in and how, when it was issued and expires, and the
CSRF token for forms.

A password login keeps only a keyed hash of ADMIN_PASSWORD in the cookie: changing or removing
the password ends those sessions. A WeCom login keeps the userid, and ends as soon as that
userid leaves ADMIN_USERIDS. Logging out records a "valid after" time for that admin in the
store (store/ops.py `AdminValidAfter`): every session issued before it ends, on every web
process, including a cookie copied before the logout.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from bot.auth.ratelimit import client_key
from settings import Settings
from store import clock
from store.ops import AdminValidAfter

COOKIE = "wqbot_admin"
STATE_COOKIE = "wqbot_admin_login"
LIFETIME = 8 * 3600
STATE_LIFETIME = 600
MAX_COOKIE = 4096


def _serializer(secret_key: str, purpose: str) -> URLSafeSerializer:
    # One salt per purpose: a login-state cookie can never pass as a session, nor the reverse.
    return URLSafeSerializer(
        secret_key,
        salt=f"wqbot-admin:{purpose}",
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )


def sign(secret_key: str, purpose: str, payload: dict) -> str:
    return _serializer(secret_key, purpose).dumps(payload)


def unsign(secret_key: str, purpose: str, value: str | None) -> dict | None:
    """The payload of a cookie we signed for `purpose` and that has not expired; None otherwise."""
    if not value or len(value) > MAX_COOKIE:
        return None
    try:
        payload = _serializer(secret_key, purpose).loads(value)
    except (BadData, ValueError, UnicodeError):
        return None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("exp"), (int, float))
        or payload["exp"] < clock.now()
    ):
        return None
    return payload


def _key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode(), f"wqbot-admin:{purpose}".encode(), hashlib.sha256).digest()


def password_fingerprint(secret_key: str, password: str) -> str:
    return hmac.new(_key(secret_key, "password"), password.encode(), hashlib.sha256).hexdigest()[:32]


def password_matches(settings: Settings, offered: str) -> bool:
    """Constant-time: compares keyed hashes, so neither length nor prefix leaks."""
    if not settings.admin_password:
        return False
    a = hmac.new(_key(settings.secret_key, "password"), offered.encode(), hashlib.sha256).digest()
    b = hmac.new(_key(settings.secret_key, "password"), settings.admin_password.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(a, b)


@dataclass(frozen=True)
class Admin:
    userid: str  # the WeCom userid, or "admin" for the local password login
    via: str  # "password" | "wecom"
    csrf: str
    expires: float
    issued: float


# -- "valid after": logout ends every earlier session ---------------------------------------------
def valid_after(userid: str) -> float:
    """Sessions of `userid` issued at or before this time are over (0: none ended yet)."""
    row = AdminValidAfter.get_or_none(AdminValidAfter.userid == userid)
    return row.valid_after if row is not None else 0.0


def end_sessions(userid: str) -> None:
    """Every session of `userid` issued until now ends, on every process (logout)."""
    t = clock.now()
    AdminValidAfter.insert(userid=userid, valid_after=t).on_conflict(
        conflict_target=[AdminValidAfter.userid], update={AdminValidAfter.valid_after: t}
    ).execute()


def new_session(settings: Settings, userid: str, via: str) -> tuple[str, Admin]:
    # A login in the same instant as a logout (a pinned test clock, a coarse clock) still counts as after it.
    issued = max(clock.now(), valid_after(userid) + 0.001)
    admin = Admin(userid=userid, via=via, csrf=secrets.token_urlsafe(24), expires=issued + LIFETIME, issued=issued)
    payload: dict[str, Any] = {"u": userid, "via": via, "csrf": admin.csrf, "exp": admin.expires, "iat": issued}
    if via == "password":
        payload["pw"] = password_fingerprint(settings.secret_key, settings.admin_password)
    return sign(settings.secret_key, "session", payload), admin


def current_admin(settings: Settings, cookie: str | None) -> Admin | None:
    """The admin a session cookie names, or None. Reads the store (the admin's "valid after")."""
    p = unsign(settings.secret_key, "session", cookie)
    if p is None:
        return None
    via, userid, issued = p.get("via"), p.get("u"), p.get("iat")
    if not isinstance(userid, str) or not isinstance(p.get("csrf"), str) or not isinstance(issued, (int, float)):
        return None
    if via == "password":
        if not settings.admin_password or not hmac.compare_digest(
            str(p.get("pw", "")), password_fingerprint(settings.secret_key, settings.admin_password)
        ):
            return None
    elif via == "wecom":
        if userid not in settings.admin_userids:
            return None
    else:
        return None
    if issued <= valid_after(userid):
        return None
    return Admin(userid=userid, via=via, csrf=p["csrf"], expires=p["exp"], issued=issued)


def csrf_ok(admin: Admin, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(admin.csrf.encode(), str(offered).encode())


# -- password guessing ------------------------------------------------------------------------------
class Throttle:
    """Failed password attempts, per process, within `window` seconds:
    - per client (`client_key`): after `limit`, that client is refused until its failures age out;
    - for everyone: after `budget` failures from all clients together, password login is refused
      for all until they age out (WeCom QR login still works). Many addresses cannot out-guess it.
    Entries are only ever dropped when they age out, never wholesale: the per-client table holds at
    most `budget` clients, since every entry in it is a failure the global budget counted."""

    def __init__(self, limit: int = 5, window: float = 900.0, budget: int = 100):
        self.limit, self.window, self.budget = limit, window, budget
        self._fails: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _age_out(self) -> None:
        cutoff = clock.now() - self.window
        while self._all and self._all[0] <= cutoff:
            self._all.popleft()
        for key in [k for k, times in self._fails.items() if not times or times[-1] <= cutoff]:
            del self._fails[key]
        for times in self._fails.values():
            while times and times[0] <= cutoff:
                times.popleft()

    def blocked(self, who: str) -> str | None:
        """Why `who` may not try a password now ("client" or "everyone"), or None."""
        self._age_out()
        if len(self._fails.get(client_key(who), ())) >= self.limit:
            return "client"
        if len(self._all) >= self.budget:
            return "everyone"
        return None

    def failed(self, who: str) -> None:
        self._age_out()
        t = clock.now()
        self._fails.setdefault(client_key(who), deque()).append(t)
        self._all.append(t)

    def succeeded(self, who: str) -> None:
        self._fails.pop(client_key(who), None)

    def tracked(self) -> int:
        """How many clients have failures on record (for tests: it stays bounded)."""
        return len(self._fails)
