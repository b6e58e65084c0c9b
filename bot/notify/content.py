"""What a notification's cards say, read back from the store (the same text on every retry)."""

from __future__ import annotations

import json

from store.notifications import Notification

from . import recipients
from .cards import CardContent


def request_of(n: Notification) -> dict:
    return json.loads(n.body)


def for_notification(n: Notification, card_id: str, with_names: bool = True) -> CardContent:
    body = request_of(n)
    initiator = body.get("initiator")
    initiator_userid = None
    shown = initiator
    if initiator and with_names:
        # Only a member the directory knows becomes a type-3 (member) row: a userid WeCom does
        # not know there could fail the whole message.
        userid = recipients.resolve([initiator])[0].get(initiator)
        name = recipients.names([userid]).get(userid) if userid else None
        if name:
            initiator_userid, shown = userid, name
    return CardContent(
        kind=n.kind,
        card_id=card_id,
        title=body.get("title") or "",
        description=body.get("description"),
        initiator=shown,
        initiator_userid=initiator_userid,
        url=body.get("url"),
        deadline=body.get("deadline"),
    )
