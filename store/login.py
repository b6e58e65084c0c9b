"""Login tables: OAuth `state` records and single-use login tickets (docs/api.md, "Login tickets").

Neither secret is stored as such: both are kept as HMAC-SHA256(SECRET_KEY, value), so a copy of
the database cannot be replayed at /oauth/h5/callback or /api/v1/tickets/validate.

Single use is a conditional UPDATE (`… WHERE used_at IS NULL AND expires_at > now`): of two
requests racing with the same state or ticket, the database lets exactly one change the row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

import peewee as pw

from .models import EpochField, Model, now

STATE_TTL = 600  # seconds a login may take on WeCom's side (QR scan included)
TICKET_TTL = 300  # seconds 微签 has to validate a ticket
_ALNUM = string.ascii_letters + string.digits
STATE_LENGTH = 43  # ~256 bits; WeCom allows a-zA-Z0-9 up to 128 bytes (docs/wecom.md, "OAuth and web login")
TICKET_LENGTH = 43
FLOWS = ("h5", "pc")


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def digest(secret_key: str, value: str) -> str:
    return hmac.new(secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()


class OAuthState(Model):
    """One login started at /oauth/h5 (flow h5) or /wx/qrlogin (flow pc)."""

    state_hash = pw.CharField(primary_key=True, max_length=64)
    flow = pw.CharField(max_length=8)
    next_path = pw.TextField(null=True)  # validated path inside the app; NULL: the landing page itself
    browser_hash = pw.CharField(max_length=64)  # the browser that started the login (cookie)
    created_at = EpochField(default=now)
    expires_at = EpochField(index=True)
    used_at = EpochField(null=True)

    class Meta:
        table_name = "login_oauth_state"


class LoginTicket(Model):
    """A ticket handed to the 微签 H5/PC page, redeemed once by 微签 at /api/v1/tickets/validate."""

    ticket_hash = pw.CharField(primary_key=True, max_length=64)
    userid = pw.CharField(max_length=64)
    via = pw.CharField(max_length=8)
    created_at = EpochField(default=now)
    expires_at = EpochField(index=True)
    used_at = EpochField(null=True)

    class Meta:
        table_name = "login_ticket"


def _create(db: pw.Database) -> None:
    db.create_tables([OAuthState, LoginTicket])


# -- state ---------------------------------------------------------------------------------------
class StateRefused(Exception):
    """Why a state was not accepted: reason is unknown, expired, used, wrong_flow or wrong_browser."""

    def __init__(self, reason: str, record: OAuthState | None = None):
        super().__init__(reason)
        self.reason, self.record = reason, record


def create_state(secret_key: str, flow: str, next_path: str | None, browser_id: str, ttl: float = STATE_TTL) -> str:
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}")
    state = random_token(STATE_LENGTH)
    t = now()
    OAuthState.create(
        state_hash=digest(secret_key, state),
        flow=flow,
        next_path=next_path,
        browser_hash=digest(secret_key, browser_id),
        created_at=t,
        expires_at=t + ttl,
    )
    return state


def consume_state(secret_key: str, state: str, flow: str, browser_id: str | None) -> OAuthState:
    """Mark `state` used and return its record, or raise StateRefused. Exactly one caller wins."""
    if not state or len(state) > 128 or not all(c in _ALNUM for c in state):
        raise StateRefused("unknown")
    key = digest(secret_key, state)
    browser = digest(secret_key, browser_id) if browser_id else ""
    t = now()
    won = (
        OAuthState.update(used_at=t)
        .where(
            (OAuthState.state_hash == key)
            & OAuthState.used_at.is_null()
            & (OAuthState.expires_at > t)
            & (OAuthState.flow == flow)
            & (OAuthState.browser_hash == browser)
        )
        .execute()
    )
    record = OAuthState.get_or_none(OAuthState.state_hash == key)
    if won == 1 and record is not None:
        return record
    if record is None:
        raise StateRefused("unknown")
    if record.flow != flow:
        raise StateRefused("wrong_flow", record)
    if record.used_at is not None:
        raise StateRefused("used", record)
    if record.expires_at <= t:
        raise StateRefused("expired", record)
    raise StateRefused("wrong_browser", record)


# -- tickets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Redeemed:
    userid: str
    via: str


class TicketRefused(Exception):
    """reason: unknown, used or expired."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def issue_ticket(secret_key: str, userid: str, via: str, ttl: float = TICKET_TTL) -> str:
    if via not in FLOWS:
        raise ValueError(f"via must be one of {FLOWS}")
    ticket = random_token(TICKET_LENGTH)
    t = now()
    LoginTicket.create(ticket_hash=digest(secret_key, ticket), userid=userid, via=via, created_at=t, expires_at=t + ttl)
    return ticket


def redeem_ticket(secret_key: str, ticket: str) -> Redeemed:
    """Use `ticket` up: returns who logged in, or raises TicketRefused. Exactly one caller wins."""
    key = digest(secret_key, ticket)
    t = now()
    won = (
        LoginTicket.update(used_at=t)
        .where((LoginTicket.ticket_hash == key) & LoginTicket.used_at.is_null() & (LoginTicket.expires_at > t))
        .execute()
    )
    row = LoginTicket.get_or_none(LoginTicket.ticket_hash == key)
    if won == 1 and row is not None:
        return Redeemed(row.userid, row.via)
    if row is None:
        raise TicketRefused("unknown")
    raise TicketRefused("used" if row.used_at is not None else "expired")


def purge_expired(older_than: float = 3600) -> int:
    """Delete states and tickets that expired more than `older_than` seconds ago (kept that long
    so a late replay still gets "used"/"expired" rather than "unknown")."""
    cutoff = now() - older_than
    n = OAuthState.delete().where(OAuthState.expires_at < cutoff).execute()
    n += LoginTicket.delete().where(LoginTicket.expires_at < cutoff).execute()
    return n


# migration steps (store/migrations.py runs them in id order, each once)
STEPS = [
    ("0401_login_tables", _create),
]
