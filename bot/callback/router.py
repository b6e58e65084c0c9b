"""Routes a decrypted callback to its handler: a matcher plus a function (slack-bolt style).

    router = Router()

    @router.message("text")
    def on_text(msg, ctx): ...

    @router.event("click", key="help")
    def on_help(msg, ctx): return replies.text("…")

    @router.event("change_contact", change_type="update_user")
    def on_update_user(msg, ctx): ...

    @router.card_button("approve")
    def on_approve(msg, ctx): ...

A handler runs inside the delivery's store transaction and may return a `Reply`. It must not
call out (WeCom API, 微签): it defers that work with `bot.queue.defer(task, **kwargs)`, which
commits with the delivery. Handlers are registered when the app is built (each capability's
`contribute()`), never when a module is imported.
The most specific matcher wins; ties go to the one registered first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from settings import Settings

log = logging.getLogger("wqbot.router")


class Inbound(dict):
    """A decrypted callback: the plaintext XML's fields by their WeCom names."""

    trace_id = ""  # the delivery's trace id, once it has one

    def get_str(self, name: str, default: str = "") -> str:
        v = self.get(name)
        return v if isinstance(v, str) else default

    @property
    def msg_type(self) -> str:
        return self.get_str("MsgType")

    @property
    def event(self) -> str:
        return self.get_str("Event")

    @property
    def event_key(self) -> str:
        return self.get_str("EventKey")

    @property
    def change_type(self) -> str:
        return self.get_str("ChangeType")

    @property
    def sender(self) -> str:
        return self.get_str("FromUserName")

    @cached_property  # read by the endpoint, the metrics and the log record of every callback
    def kind(self) -> str:
        """A short label for logs and metrics: text, event:click, change_contact:update_user…"""
        if self.msg_type != "event":
            return self.msg_type or "unknown"
        if self.event == "change_contact":
            return f"change_contact:{self.change_type}"
        return f"event:{self.event}"


@dataclass
class Context:
    settings: Settings
    endpoint: str  # "app" or "contacts"
    trace_id: str = ""


Handler = Callable[[Inbound, Context], object]


Route = tuple[dict, Handler]
# Distinct (MsgType, Event) pairs whose candidate routes are kept; WeCom sends a few dozen kinds.
MAX_KINDS = 256


class Router:
    def __init__(self):
        self._routes: list[Route] = []
        # (MsgType, Event) -> the routes that may match it, in order, with the keys left to test:
        # a callback's handler is found among a few candidates instead of by testing every route.
        self._by_kind: dict[tuple[object, object], list[tuple[tuple[tuple[str, object], ...], Handler]]] = {}

    def _add(self, match: dict, fn: Handler) -> Handler:
        self._routes.append(({k: v for k, v in match.items() if v is not None}, fn))
        # most specific first; sort is stable, so registration order breaks ties
        self._routes.sort(key=lambda r: -len(r[0]))
        self._by_kind.clear()
        return fn

    def message(self, msg_type: str):
        return lambda fn: self._add({"MsgType": msg_type}, fn)

    def event(self, event: str, *, key: str | None = None, change_type: str | None = None):
        return lambda fn: self._add(
            {"MsgType": "event", "Event": event, "EventKey": key, "ChangeType": change_type}, fn
        )

    def card_button(self, key: str | None = None):
        return lambda fn: self._add({"MsgType": "event", "Event": "template_card_event", "EventKey": key}, fn)

    def include(self, other: "Router") -> None:
        for match, fn in other._routes:
            self._add(match, fn)

    def resolve(self, msg: Inbound) -> Handler | None:
        msg_type, event = msg.get("MsgType"), msg.get("Event")
        if isinstance(msg_type, str) and (event is None or isinstance(event, str)):
            candidates = self._by_kind.get((msg_type, event))
            if candidates is None:
                candidates = self._candidates(msg_type, event)
        else:  # nested or repeated elements (a dict or a list): match, but never a cache key
            candidates = self._candidates(msg_type, event, remember=False)
        for rest, fn in candidates:
            for k, v in rest:
                if msg.get(k) != v:
                    break
            else:
                return fn
        return None

    def _candidates(
        self, msg_type: object, event: object, remember: bool = True
    ) -> list[tuple[tuple[tuple[str, object], ...], Handler]]:
        out = [
            (tuple((k, v) for k, v in match.items() if k not in ("MsgType", "Event")), fn)
            for match, fn in self._routes
            if match.get("MsgType", msg_type) == msg_type and match.get("Event", event) == event
        ]
        if remember and len(self._by_kind) < MAX_KINDS:  # only verified callbacks get here; bounded anyway
            self._by_kind[(msg_type, event)] = out
        return out
