"""The callback loads of bench/callback.py: plaintext WeCom callbacks, every one a new delivery.

- help     `help` menu clicks, each from a new FromUserName (the benchmark's original load)
- unknown  menu clicks whose key no handler knows (a stale menu), keys from UNKNOWN_KEYS
- mixed    what a working day looks like, in 20-callback cycles (MIX):
           40 % clicks: help, pending (待我处理: the member's open tasks) and unknown keys;
           30 % change_contact update_user on existing members (the directory changes);
           20 % text messages (帮助, 待办, anything else);
           10 % 同意 taps on the card of an open task, each task tapped once, by its first recipient.
           It needs a store seeded through the API (bench/seed.py): members and open tasks.

A plaintext is unique by its CreateTime (and MsgId / ResponseCode): `Sequence` hands out
CreateTimes from a random base, so every callback built in one run is a new delivery.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

CORP = "ww1a2b3c4d5e6f7a8b"
AGENT = "1000002"
UNKNOWN_KEYS = ("menu_v1_help", "old_report", "contact_hr", "feedback", "settings_beta")
LOADS = ("help", "unknown", "mixed")

# One 20-callback cycle of the mixed load: 8 clicks, 6 update_user, 4 texts, 2 taps.
MIX = (
    ("click", "help"),
    ("change", None),
    ("click", "pending"),
    ("text", "待办"),
    ("change", None),
    ("click", None),  # an unknown key
    ("tap", None),
    ("click", "help"),
    ("change", None),
    ("text", "帮助"),
    ("click", "pending"),
    ("change", None),
    ("click", "help"),
    ("text", "明天几点开会？"),
    ("change", None),
    ("click", None),
    ("tap", None),
    ("click", "pending"),
    ("change", None),
    ("text", "pending"),
)
MIX_KINDS = ("click:help", "click:pending", "click:unknown", "text", "change", "tap")
MIX_SHARES = {kind: sum(k == kind for k, _ in MIX) / len(MIX) for kind in ("click", "change", "text", "tap")}


class Sequence:
    """CreateTimes (and MsgIds) that never repeat within a run."""

    def __init__(self) -> None:
        self._next = itertools.count(1_700_000_000 + secrets.randbelow(50_000_000))

    def __call__(self) -> int:
        return next(self._next)


def _cdata(name: str, value: str) -> str:
    return f"<{name}><![CDATA[{value}]]></{name}>"


def click(t: int, user: str, key: str) -> str:
    return (
        f"<xml>{_cdata('ToUserName', CORP)}{_cdata('FromUserName', user)}<CreateTime>{t}</CreateTime>"
        f"{_cdata('MsgType', 'event')}{_cdata('Event', 'click')}{_cdata('EventKey', key)}"
        f"<AgentID>{AGENT}</AgentID></xml>"
    )


def text(t: int, user: str, content: str) -> str:
    return (
        f"<xml>{_cdata('ToUserName', CORP)}{_cdata('FromUserName', user)}<CreateTime>{t}</CreateTime>"
        f"{_cdata('MsgType', 'text')}{_cdata('Content', content)}<MsgId>{t}{t % 9973:04d}</MsgId>"
        f"<AgentID>{AGENT}</AgentID></xml>"
    )


def update_user(t: int, userid: str, department: str) -> str:
    """change_contact/update_user on an existing member: new position and departments."""
    return (
        f"<xml>{_cdata('ToUserName', CORP)}{_cdata('FromUserName', 'sys')}<CreateTime>{t}</CreateTime>"
        f"{_cdata('MsgType', 'event')}{_cdata('Event', 'change_contact')}{_cdata('ChangeType', 'update_user')}"
        f"{_cdata('UserID', userid)}{_cdata('Position', f'岗位{t % 97}')}{_cdata('Department', department)}"
        f"<MainDepartment>{department.split(',')[0]}</MainDepartment>{_cdata('IsLeaderInDept', '0')}"
        f"<Status>1</Status></xml>"
    )


def tap(t: int, user: str, card_id: str, key: str = "approve") -> str:
    return (
        f"<xml>{_cdata('ToUserName', CORP)}{_cdata('FromUserName', user)}<CreateTime>{t}</CreateTime>"
        f"{_cdata('MsgType', 'event')}{_cdata('Event', 'template_card_event')}{_cdata('EventKey', key)}"
        f"{_cdata('TaskId', card_id)}{_cdata('CardType', 'button_interaction')}"
        f"{_cdata('ResponseCode', f'RC{t:x}{secrets.token_hex(6)}')}<AgentID>{AGENT}</AgentID></xml>"
    )


@dataclass
class Seeded:
    """What the mixed load needs from its seeded store: members (userid, departments) and the
    open tasks' cards, each as (card_id, the member who taps it)."""

    members: list[tuple[str, str]]
    cards: list[tuple[str, str]]


class Load:
    """Plaintexts of one load; `next()` continues where the last call stopped (the taps of a
    warm-up file and of the measured file are different tasks). Each Load taps the seeded tasks
    from the first: give every copy of the seeded store its own Load."""

    def __init__(self, name: str, seeded: Seeded | None = None, only: str | None = None):
        if name not in LOADS:
            raise ValueError(f"unknown load {name!r}: one of {', '.join(LOADS)}")
        if name == "mixed" and seeded is None:
            raise ValueError("the mixed load needs a seeded store (bench/seed.py)")
        self.name, self.seeded = name, seeded
        # `only`: one kind of the mix (click:help, click:pending, click:unknown, text, change, tap)
        self.mix = [m for m in MIX if only is None or only in (m[0], f"{m[0]}:{m[1] or 'unknown'}")]
        if not self.mix:
            raise ValueError(f"no {only!r} in the mix")
        self.seq = Sequence()
        self.salt = secrets.token_hex(3)
        self.i = 0
        self.taps = 0
        self.wrapped_taps = 0  # taps past the seeded tasks (they land on decided tasks)

    def next(self) -> str:
        i, t = self.i, self.seq()
        self.i += 1
        if self.name == "help":
            return click(t, f"u{self.salt}{i:07d}", "help")
        if self.name == "unknown":
            return click(t, f"u{self.salt}{i:07d}", UNKNOWN_KEYS[i % len(UNKNOWN_KEYS)])
        assert self.seeded is not None
        members = self.seeded.members
        user, departments = members[(i * 7919) % len(members)]
        kind, arg = self.mix[i % len(self.mix)]
        if kind == "click":
            return click(t, user, arg or UNKNOWN_KEYS[(i // len(self.mix)) % len(UNKNOWN_KEYS)])
        if kind == "text":
            return text(t, user, arg)
        if kind == "change":
            return update_user(t, user, departments)
        cards = self.seeded.cards
        n, self.taps = self.taps, self.taps + 1
        if n >= len(cards):
            self.wrapped_taps += 1
        card_id, tapper = cards[n % len(cards)]
        return tap(t, tapper, card_id)

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]


def taps_needed(requests: int) -> int:
    return int(requests * MIX_SHARES["tap"]) + 2
