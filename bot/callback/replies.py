"""Passive replies a handler may return; the callback endpoint encrypts them.

A reply is built for the member who wrote (`msg.sender`) and answers as the corp."""

from __future__ import annotations

from dataclasses import dataclass, field

from store import clock

from .xml import document

TEXT_LIMIT = 2048  # bytes, WeCom's cap for a passive text reply
NEWS_LIMIT = 8  # articles per news reply


@dataclass
class Reply:
    msg_type: str
    body: dict = field(default_factory=dict)

    def to_xml(self, to_user: str, corp_id: str, now: int | None = None) -> str:
        head = {
            "ToUserName": to_user,
            "FromUserName": corp_id,
            "CreateTime": int(now or clock.now()),
            "MsgType": self.msg_type,
        }
        return document({**head, **self.body})


def _clip(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "…"


def text(content: str) -> Reply:
    return Reply("text", {"Content": _clip(content, TEXT_LIMIT)})


def news(articles: list[dict]) -> Reply:
    """articles: [{"title", "description", "url", "picurl"?}], at most 8."""
    items = [
        {
            "Title": a["title"],
            "Description": a.get("description", ""),
            "Url": a["url"],
            "PicUrl": a.get("picurl", ""),
        }
        for a in articles[:NEWS_LIMIT]
    ]
    return Reply("news", {"ArticleCount": len(items), "Articles": {"item": items}})


def update_button(replace_name: str) -> Reply:
    """Turns the tapped card's buttons into one greyed-out label (template_card_event only)."""
    return Reply("update_button", {"Button": {"ReplaceName": replace_name}})
