"""The admin console's session: a cookie signed with HMAC-SHA256 under a key derived from
SECRET_KEY. It holds who logged in and how, when it expires, and the CSRF token for forms.

A password login keeps only a keyed hash of ADMIN_PASSWORD in the cookie: changing or removing
the password ends those sessions. A WeCom login keeps the userid, and ends as soon as that
userid leaves ADMIN_USERIDS. No server-side state, so any web process can check any cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from settings import Settings
from store import clock

COOKIE = "wqbot_admin"
STATE_COOKIE = "wqbot_admin_login"
LIFETIME = 8 * 3600
STATE_LIFETIME = 600


def _key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode(), f"wqbot-admin:{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret_key: str, purpose: str, payload: dict) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = _b64(hmac.new(_key(secret_key, purpose), body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def unsign(secret_key: str, purpose: str, value: str | None) -> dict | None:
    """The payload of a cookie we signed for `purpose` and that has not expired; None otherwise."""
    if not value or value.count(".") != 1 or len(value) > 4096:
        return None
    body, mac = value.split(".")
    want = _b64(hmac.new(_key(secret_key, purpose), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac.encode(), want.encode()):  # bytes: a str with non-ASCII raises TypeError
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("exp"), (int, float))
        or payload["exp"] < clock.now()
    ):
        return None
    return payload


def password_fingerprint(secret_key: str, password: str) -> str:
    return _b64(hmac.new(_key(secret_key, "password"), password.encode(), hashlib.sha256).digest())[:22]


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


def new_session(settings: Settings, userid: str, via: str) -> tuple[str, Admin]:
    admin = Admin(userid=userid, via=via, csrf=secrets.token_urlsafe(24), expires=clock.now() + LIFETIME)
    payload = {"u": userid, "via": via, "csrf": admin.csrf, "exp": admin.expires}
    if via == "password":
        payload["pw"] = password_fingerprint(settings.secret_key, settings.admin_password)
    return sign(settings.secret_key, "session", payload), admin


def current_admin(settings: Settings, cookie: str | None) -> Admin | None:
    p = unsign(settings.secret_key, "session", cookie)
    if p is None:
        return None
    via, userid = p.get("via"), p.get("u")
    if not isinstance(userid, str) or not isinstance(p.get("csrf"), str):
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
    return Admin(userid=userid, via=via, csrf=p["csrf"], expires=p["exp"])


def csrf_ok(admin: Admin, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(admin.csrf.encode(), str(offered).encode())


class Throttle:
    """Failed password attempts per client address: after `limit` within `window` seconds,
    refuse that address until the window passes (per process; enough to stop guessing)."""

    def __init__(self, limit: int = 5, window: float = 900.0):
        self.limit, self.window = limit, window
        self._fails: dict[str, list[float]] = {}

    def blocked(self, who: str) -> bool:
        t = clock.now()
        recent = [x for x in self._fails.get(who, []) if x > t - self.window]
        self._fails[who] = recent
        return len(recent) >= self.limit

    def failed(self, who: str) -> None:
        if len(self._fails) > 10000:
            self._fails.clear()
        self._fails.setdefault(who, []).append(clock.now())

    def succeeded(self, who: str) -> None:
        self._fails.pop(who, None)
