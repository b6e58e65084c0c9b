"""The template_card JSON WeCom gets (docs/wecom.md, "Messages and cards"). Pure functions: no store, no network.

- approve: `button_interaction` with 同意/拒绝 (button keys `approve`/`reject`); tapping the card
  body opens the task in the H5, logged in.
- sign: `text_notice` whose tap (card_action and the jump) opens the task's H5 page through
  /oauth/h5. It carries an `action_menu` because WeCom only lets us update text_notice cards
  that have one (94945): that is how a signed/withdrawn task's cards change afterwards.
- notice: `text_notice`, information only.

Every card has a `task_id` of its own per send batch (`card_id`): WeCom wants task_id unique per
app, and a unique id also keeps `enable_duplicate_check` from swallowing a different
notification whose text happens to be identical.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import texts
from bot.auth.links import h5_entry
from bot.callback.xml import xml_safe
from settings import Settings
from store.clock import CST

BATCH = 1000  # message/send touser and update_template_card userids: at most 1000 (docs/wecom.md)
DUPLICATE_CHECK_INTERVAL = 14400  # the maximum (4 h): a retried batch within it is never re-delivered

# WeCom's display guidance, in characters (longer text is cut off on the phone anyway)
TITLE_MAX, DESC_MAX, SUB_TITLE_MAX, VALUE_MAX = 36, 44, 160, 30

_UNSAFE = re.compile(r"[^0-9A-Za-z_\-@]")


def card_id(notification_id: str, task_id: str | None, batch: int) -> str:
    """WeCom task_id for one batch of one notification: `[0-9A-Za-z_-@]`, ≤ 128 bytes, readable."""
    stem = _UNSAFE.sub("_", task_id or "notice")[:80]
    digest = hashlib.sha1(notification_id.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}-{batch}"


@dataclass(frozen=True)
class CardContent:
    kind: str  # approve | sign | notice
    card_id: str
    title: str
    description: str | None = None
    initiator: str | None = None  # shown name (or the raw value 微签 sent)
    initiator_userid: str | None = None  # set when the initiator is a WeCom member we know
    url: str | None = None  # a path inside the H5
    deadline: float | None = None


def clip(text: str | None, limit: int) -> str:
    """`text` cut to `limit` characters, without the control characters no card or reply can show."""
    text = xml_safe(text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_deadline(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, CST).strftime("%Y-%m-%d %H:%M")


def link(settings: Settings, c: CardContent) -> str:
    return h5_entry(settings, c.url or "/")


def _source() -> dict:
    return {"desc": texts.CARD_SOURCE, "desc_color": 0}


def _titles(c: CardContent) -> dict:
    """main_title (+ sub_title_text for a description too long for the title's subline)."""
    main = {"title": clip(c.title, TITLE_MAX)}
    out: dict[str, Any] = {"main_title": main}
    desc = (c.description or "").strip()
    if desc and len(desc) <= DESC_MAX:
        main["desc"] = desc
    elif desc:
        out["sub_title_text"] = clip(desc, SUB_TITLE_MAX)
    return out


def _facts(c: CardContent, status: str | None = None) -> list[dict]:
    rows = []
    if c.initiator_userid:
        # type 3: WeCom shows the member and opens their profile on tap
        rows.append(
            {
                "keyname": texts.CARD_INITIATOR,
                "type": 3,
                "value": clip(c.initiator or c.initiator_userid, VALUE_MAX),
                "userid": c.initiator_userid,
            }
        )
    elif c.initiator:
        rows.append({"keyname": texts.CARD_INITIATOR, "value": clip(c.initiator, VALUE_MAX)})
    if c.deadline is not None:
        rows.append({"keyname": texts.CARD_DEADLINE, "value": format_deadline(c.deadline)})
    if status:
        rows.append({"keyname": texts.CARD_STATUS, "value": status})
    return rows


def approve_card(settings: Settings, c: CardContent) -> dict:
    card = {
        "card_type": "button_interaction",
        "source": _source(),
        **_titles(c),
        "card_action": {"type": 1, "url": link(settings, c)},
        "task_id": c.card_id,
        "button_list": [
            {"type": 0, "text": texts.CARD_APPROVE, "style": 1, "key": "approve"},
            {"type": 0, "text": texts.CARD_REJECT, "style": 2, "key": "reject"},
        ],
    }
    facts = _facts(c)
    if facts:
        card["horizontal_content_list"] = facts
    return card


def sign_card(settings: Settings, c: CardContent, result: str | None = None) -> dict:
    """The sign card; with `result` (已签署, 已撤销…) the replacement shown once the task is over."""
    url = link(settings, c)
    card = {
        "card_type": "text_notice",
        "source": _source(),
        **_titles(c),
        "emphasis_content": {"title": result or texts.CARD_SIGN_PENDING},
        "card_action": {"type": 1, "url": url},
        "action_menu": {"desc": texts.CARD_MENU_DESC, "action_list": [{"text": texts.CARD_MENU_OPEN, "key": "open"}]},
        "task_id": c.card_id,
    }
    facts = _facts(c)
    if facts:
        card["horizontal_content_list"] = facts
    if result is None:
        card["jump_list"] = [{"type": 1, "title": texts.CARD_SIGN_OPEN, "url": url}]
    return card


def notice_card(settings: Settings, c: CardContent) -> dict:
    url = link(settings, c)
    card = {
        "card_type": "text_notice",
        "source": _source(),
        **_titles(c),
        "jump_list": [{"type": 1, "title": texts.CARD_OPEN, "url": url}],
        "card_action": {"type": 1, "url": url},
        "task_id": c.card_id,
    }
    facts = _facts(c)
    if facts:
        card["horizontal_content_list"] = facts
    return card


BUILDERS = {"approve": approve_card, "sign": sign_card, "notice": notice_card}


def build(settings: Settings, c: CardContent) -> dict:
    return BUILDERS[c.kind](settings, c)


def send_body(userids: list[str], card: dict) -> dict:
    """A message/send body (agentid is filled in by the client)."""
    if not 0 < len(userids) <= BATCH:
        raise ValueError(f"a message/send batch takes 1..{BATCH} userids, not {len(userids)}")
    return {
        "touser": "|".join(userids),
        "msgtype": "template_card",
        "template_card": card,
        "enable_duplicate_check": 1,
        "duplicate_check_interval": DUPLICATE_CHECK_INTERVAL,
    }


def button_update(userids: list[str], response_code: str, label: str) -> dict:
    """update_template_card: the buttons become one greyed-out `label` (button cards only)."""
    return {"userids": list(userids), "response_code": response_code, "button": {"replace_name": label}}


def card_update(userids: list[str], response_code: str, card: dict) -> dict:
    """update_template_card: a whole new card (text_notice cards with an action_menu)."""
    return {"userids": list(userids), "response_code": response_code, "template_card": card}
