"""App messages as WeCom delivers them: message/send, template cards and their single-use
response codes, update_template_card, recall, and what each member's card shows now."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import deque

from .directory import Directory, User
from .errors import WxError

MSGTYPES = (
    "text",
    "image",
    "voice",
    "video",
    "file",
    "textcard",
    "news",
    "mpnews",
    "markdown",
    "miniprogram_notice",
    "template_card",
)
CARD_TYPES = ("text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction")
INTERACTIVE = ("button_interaction", "vote_interaction", "multiple_interaction")
TASK_ID_CHARS = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-@")


def callback_capable(card: dict) -> bool:
    return card.get("card_type") in INTERACTIVE or bool(card.get("action_menu"))


def _blen(s) -> int:
    return len(str(s).encode("utf-8"))


def validate_card(card) -> None:
    """The template_card checks WeCom makes (docs/wecom.md, "Messages and cards"), with its errcodes."""
    if not isinstance(card, dict):
        raise WxError(40058, "template_card must be an object")
    ctype = card.get("card_type")
    if ctype not in CARD_TYPES:
        raise WxError(42031, f"card_type must be one of {', '.join(CARD_TYPES)}")
    task_id = card.get("task_id")
    if callback_capable(card) or task_id is not None:
        if not isinstance(task_id, str) or not task_id or _blen(task_id) > 128 or set(task_id) - TASK_ID_CHARS:
            raise WxError(
                42014, "task_id is required for interactive cards and action_menu: [0-9A-Za-z_-@], at most 128 bytes"
            )
    menu = card.get("action_menu")
    if menu is not None:
        actions = menu.get("action_list") if isinstance(menu, dict) else None
        if (
            not isinstance(actions, list)
            or not 1 <= len(actions) <= 3
            or not all(isinstance(a, dict) and a.get("text") and a.get("key") for a in actions)
        ):
            raise WxError(40058, "action_menu.action_list must hold 1-3 {text, key}")
        keys = [a["key"] for a in actions]
        if len(set(keys)) != len(keys):
            raise WxError(42051, "action_menu keys must be unique")
    hcl = card.get("horizontal_content_list")
    if hcl is not None:
        if not isinstance(hcl, list) or len(hcl) > 6:
            raise WxError(42035, "horizontal_content_list holds at most 6 items")
        for item in hcl:
            if not isinstance(item, dict) or not item.get("keyname"):
                raise WxError(42027, "every horizontal_content_list item needs keyname")
            if item.get("type") == 1 and not item.get("url"):
                raise WxError(42028, "horizontal_content_list item of type 1 needs url")
    jumps = card.get("jump_list")
    if jumps is not None:
        if not isinstance(jumps, list) or len(jumps) > 3:
            raise WxError(42042, "jump_list holds at most 3 items")
        for j in jumps:
            if not isinstance(j, dict) or not j.get("title"):
                raise WxError(42033, "every jump_list item needs title")
            if j.get("type", 1) == 1 and not j.get("url"):
                raise WxError(42028, "jump_list item of type 1 needs url")
    vcl = card.get("vertical_content_list")
    if vcl is not None and (not isinstance(vcl, list) or len(vcl) > 4):
        raise WxError(42036, "vertical_content_list holds at most 4 items")
    action = card.get("card_action")
    if action is not None:
        if not isinstance(action, dict) or action.get("type") not in (0, 1, 2):
            raise WxError(42045, "card_action.type must be 1 (url) or 2 (mini program)")
        if action.get("type") == 1 and not action.get("url"):
            raise WxError(42028, "card_action of type 1 needs url")
    main_title = card.get("main_title") if isinstance(card.get("main_title"), dict) else {}
    if ctype in ("text_notice", "news_notice"):
        if not action or action.get("type") == 0:
            raise WxError(42045, f"{ctype} needs card_action")
        if ctype == "text_notice" and not (main_title.get("title") or card.get("sub_title_text")):
            raise WxError(42033, "text_notice needs main_title.title or sub_title_text")
        if ctype == "news_notice":
            img = card.get("card_image")
            if not (isinstance(img, dict) and img.get("url")) and not card.get("image_text_area"):
                raise WxError(42044, "news_notice needs card_image.url or image_text_area")
    if ctype == "button_interaction":
        buttons = card.get("button_list")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 6:
            raise WxError(40058, "button_list must hold 1-6 buttons")
        for b in buttons:
            if not isinstance(b, dict) or not b.get("text"):
                raise WxError(42038, "every button needs text")
            if b.get("type", 0) == 0 and (not b.get("key") or _blen(b["key"]) > 1024):
                raise WxError(42039, "a callback button (type 0) needs a key of at most 1024 bytes")
            if b.get("type") == 1 and not b.get("url"):
                raise WxError(42028, "a url button (type 1) needs url")
        if not main_title.get("title"):
            raise WxError(42033, "button_interaction needs main_title.title")
    if ctype in ("vote_interaction", "multiple_interaction"):
        submit = card.get("submit_button")
        if not isinstance(submit, dict) or not submit.get("key"):
            raise WxError(42046, "submit_button.key is required")
        if not submit.get("text"):
            raise WxError(42049, "submit_button.text is required")
        if ctype == "vote_interaction":
            box = card.get("checkbox")
            if (
                not isinstance(box, dict)
                or not box.get("question_key")
                or not isinstance(box.get("option_list"), list)
                or not 1 <= len(box["option_list"]) <= 20
            ):
                raise WxError(40058, "vote_interaction needs checkbox{question_key, option_list[1..20]}")
        else:
            sel = card.get("select_list")
            if not isinstance(sel, list) or not 1 <= len(sel) <= 3:
                raise WxError(42047, "multiple_interaction needs 1-3 select_list items")


class CardCopy:
    __slots__ = (
        "userid",
        "msgid",
        "delivered_at",
        "template",
        "state",
        "replace_name",
        "updated_by",
        "updated_at",
        "clicks",
        "updates",
    )

    def __init__(self, userid: str, msgid: str, at: float, template: dict):
        self.userid, self.msgid, self.delivered_at, self.template = userid, msgid, at, template
        self.state = "active"  # active | button_replaced | card_replaced | recalled
        self.replace_name = None
        self.updated_by = None  # api | passive_reply
        self.updated_at = None
        self.clicks: list[dict] = []
        self.updates = 0

    @property
    def clickable(self) -> bool:
        return self.state in ("active", "card_replaced") and callback_capable(self.template)

    def public(self) -> dict:
        return {
            "userid": self.userid,
            "msgid": self.msgid,
            "delivered_at": self.delivered_at,
            "state": self.state,
            "replace_name": self.replace_name,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
            "updates": self.updates,
            "clicks": self.clicks,
            "card": self.template,
        }


class Card:
    __slots__ = ("task_id", "card_type", "template", "capable", "copies", "created")

    def __init__(self, task_id: str, template: dict, at: float):
        self.task_id, self.template, self.created = task_id, template, at
        self.card_type = template.get("card_type")
        self.capable = callback_capable(template)
        self.copies: dict[str, CardCopy] = {}

    def public(self, detail: bool = True) -> dict:
        pending = [c.userid for c in self.copies.values() if c.state == "active"]
        out = {
            "task_id": self.task_id,
            "card_type": self.card_type,
            "callback_capable": self.capable,
            "created": self.created,
            "recipients": len(self.copies),
            "updated": len(self.copies) - len(pending),
            "all_updated": bool(self.copies) and not pending,
            "not_updated": pending[:1000],
        }
        if detail:
            out["card"] = self.template
            out["copies"] = {c.userid: c.public() for c in self.copies.values()}
        return out


class ResponseCode:
    __slots__ = ("code", "task_id", "issued_at", "used_at", "origin", "userid")

    def __init__(self, code, task_id, issued_at, origin, userid=None):
        self.code, self.task_id, self.issued_at, self.origin, self.userid = code, task_id, issued_at, origin, userid
        self.used_at = None


def _split(value, name: str) -> list[str]:
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise WxError(40058, f'{name} must be a "a|b|c" string')
    return [x.strip() for x in value.split("|") if x.strip()]


class Messaging:
    def __init__(self, sim):
        self.sim = sim
        self.messages: dict[str, dict] = {}
        self.order: deque[str] = deque()
        self.inbox: dict[str, list[str]] = {}
        self.cards: dict[str, Card] = {}
        self.codes: dict[str, ResponseCode] = {}
        self.duplicates: dict[str, tuple[float, dict]] = {}
        self.member_rate: dict[str, deque] = {}
        self.seq = 0

    @property
    def directory(self) -> Directory:
        return self.sim.directory

    def reset(self) -> None:
        self.__init__(self.sim)

    # -- helpers ----------------------------------------------------------------------------
    def _check_agent(self, body: dict) -> None:
        agentid = body.get("agentid")
        if isinstance(agentid, str) and agentid.isdigit():
            agentid = int(agentid)
        if not isinstance(agentid, int) or isinstance(agentid, bool):
            raise WxError(40056, "agentid is required (the app's AgentId, a number)")
        if agentid != self.sim.cfg.agent_id:
            raise WxError(301002, f"agentid {agentid} is not this token's app")

    def new_response_code(self, task_id: str, origin: str, userid: str | None = None) -> str:
        code = "RC" + secrets.token_urlsafe(30)
        self.codes[code] = ResponseCode(code, task_id, self.sim.clock.now(), origin, userid)
        return code

    def _deliverable(self, u: User) -> bool:
        return u.status in (1, 4) and self.sim.visible_user(u)

    def _rate_ok(self, key: str, now: float) -> bool:
        per_min, per_hour = self.sim.cfg.member_messages_per_minute, self.sim.cfg.member_messages_per_hour
        if not per_min and not per_hour:
            return True
        q = self.member_rate.get(key)
        if q is None:
            q = self.member_rate[key] = deque()
        while q and now - q[0] >= 3600:
            q.popleft()
        if per_hour and len(q) >= per_hour:
            return False
        if per_min:
            recent = 0
            for t in reversed(q):
                if now - t >= 60:
                    break
                recent += 1
                if recent >= per_min:
                    return False
        q.append(now)
        return True

    def _record(self, msg: dict) -> None:
        self.messages[msg["msgid"]] = msg
        self.order.append(msg["msgid"])
        for uid in msg["delivered"]:
            self.inbox.setdefault(uid.lower(), []).append(msg["msgid"])

    # -- message/send ---------------------------------------------------------------------
    def send(self, body: dict) -> dict:
        cfg, now = self.sim.cfg, self.sim.clock.now()
        self._check_agent(body)
        msgtype = body.get("msgtype")
        if msgtype not in MSGTYPES:
            raise WxError(40008, f"msgtype must be one of {', '.join(MSGTYPES)}")
        touser = _split(body.get("touser"), "touser")
        toparty = _split(body.get("toparty"), "toparty")
        totag = _split(body.get("totag"), "totag")
        if not touser and not toparty and not totag:
            raise WxError(82001, "touser, toparty and totag are all empty")
        if len(touser) > 1000:
            raise WxError(40032, f"touser holds {len(touser)} userids; at most 1000 per call")
        if len(toparty) > 100:
            raise WxError(82002, "toparty holds more than 100 departments")
        if len(totag) > 100:
            raise WxError(82003, "totag holds more than 100 tags")
        payload = body.get(msgtype)
        if not isinstance(payload, dict):
            raise WxError(40058, f'"{msgtype}" object is missing')
        self._validate_payload(msgtype, payload)
        card = payload if msgtype == "template_card" else None
        if card is not None and callback_capable(card) and not cfg.callback_url:
            raise WxError(
                43012,
                "the app has no 接收消息 callback URL, so it cannot send interactive cards "
                "(sim: start it with --callback-url)",
            )

        if body.get("enable_duplicate_check") in (1, "1", True):
            interval = body.get("duplicate_check_interval", 1800)
            interval = min(max(int(interval) if str(interval).isdigit() else 1800, 0), 14400)
            key = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            hit = self.duplicates.get(key)
            if hit and now - hit[0] < interval:
                self.sim.annotate(duplicate_of=hit[1].get("msgid"))
                return dict(hit[1])
        else:
            key = None

        valid: dict[str, User] = {}
        invaliduser: list[str] = []
        if "@all" in touser:
            for u in self.directory.users.values():
                if self._deliverable(u):
                    valid[u.userid.lower()] = u
        for uid in touser:
            if uid == "@all":
                continue
            u = self.directory.user(uid)
            if u is not None and self._deliverable(u):
                valid.setdefault(u.userid.lower(), u)
            elif uid.lower() not in invaliduser:
                invaliduser.append(uid.lower())
        invalidparty = []
        for p in toparty:
            pid = int(p) if p.isdigit() else None
            if pid is None or pid not in self.directory.departments or not self.sim.visible_department(pid):
                invalidparty.append(p)
                continue
            for u in self.directory.users_in(self.directory.subtree(pid)):
                if self._deliverable(u):
                    valid.setdefault(u.userid.lower(), u)
        invalidtag = list(totag)  # the emulated corp has no tags
        result = {
            "errcode": 0,
            "errmsg": "ok",
            "invaliduser": "|".join(invaliduser),
            "invalidparty": "|".join(invalidparty),
            "invalidtag": "|".join(invalidtag),
            "unlicenseduser": "",
        }
        if not valid:
            raise WxError(81013, "every recipient is invalid or outside the app's visible range")

        self.seq += 1
        msgid = secrets.token_urlsafe(48)
        delivered, dropped, already = [], [], []
        task = None
        task_id = card.get("task_id") if card is not None else None
        if task_id:
            task = self.cards.get(task_id)
            if task is None:
                task = self.cards[task_id] = Card(task_id, card, now)
        for k, u in valid.items():
            if task is not None and k in task.copies:
                already.append(u.userid)  # a task_id is unique per app: the same card twice is not shown twice
                continue
            if not self._rate_ok(k, now):
                dropped.append(u.userid)  # over 30/min or 1000/h per member: WeCom drops silently
                continue
            delivered.append(u.userid)
            if task is not None:
                task.copies[k] = CardCopy(u.userid, msgid, now, card)
        msg = {
            "msgid": msgid,
            "seq": self.seq,
            "at": now,
            "via": "api",
            "msgtype": msgtype,
            "content": payload,
            "delivered": delivered,
            "dropped": dropped,
            "already_had_task": already,
            "invaliduser": invaliduser,
            "invalidparty": invalidparty,
            "invalidtag": invalidtag,
            "task_id": task_id,
            "recalled": False,
            "safe": body.get("safe", 0),
        }
        if card is not None and callback_capable(card):
            result["response_code"] = self.new_response_code(task_id, "send")
        result["msgid"] = msgid
        self._record(msg)
        if key is not None:
            self.duplicates[key] = (now, result)
        return result

    def _validate_payload(self, msgtype: str, p: dict) -> None:
        if msgtype in ("text", "markdown"):
            content = p.get("content")
            if not isinstance(content, str) or not content:
                raise WxError(44004, f"{msgtype}.content is empty")
            if _blen(content) > 2048:
                raise WxError(45002, f"{msgtype}.content is {_blen(content)} bytes; at most 2048")
        elif msgtype == "textcard":
            for f, code in (("title", 41016), ("description", 41033), ("url", 40058)):
                if not p.get(f):
                    raise WxError(code, f"textcard.{f} is required")
            if _blen(p["title"]) > 128 or _blen(p["description"]) > 512:
                raise WxError(45002, "textcard title ≤ 128 bytes, description ≤ 512 bytes")
        elif msgtype == "news":
            arts = p.get("articles")
            if not isinstance(arts, list) or not 1 <= len(arts) <= 8:
                raise WxError(45008, "news.articles must hold 1-8 articles")
            for a in arts:
                if not isinstance(a, dict) or not a.get("title"):
                    raise WxError(41016, "every article needs a title")
        elif msgtype == "template_card":
            validate_card(p)
        elif msgtype in ("image", "voice", "video", "file"):
            if not p.get("media_id"):
                raise WxError(40058, f"{msgtype}.media_id is required")

    # -- update_template_card -----------------------------------------------------------------
    def update(self, body: dict) -> dict:
        now = self.sim.clock.now()
        self._check_agent(body)
        code = body.get("response_code")
        if not isinstance(code, str) or not code:
            raise WxError(40063, "response_code is required")
        rc = self.codes.get(code)
        if rc is None:
            raise WxError(40058, "invalid response_code")
        if rc.used_at is not None:
            raise WxError(40058, "response_code has already been used (each is single-use)")
        if now - rc.issued_at > self.sim.cfg.response_code_ttl:
            raise WxError(40058, "response_code expired")
        card = self.cards.get(rc.task_id)
        if card is None:
            raise WxError(42016, "the task of this response_code no longer exists")
        button = body.get("button")
        new_card = body.get("template_card")
        if button is None and new_card is None:
            raise WxError(40063, "give button.replace_name or template_card")
        if button is not None:
            if card.card_type not in INTERACTIVE:
                raise WxError(40058, "button.replace_name only updates button/vote/multiple cards")
            name = button.get("replace_name") if isinstance(button, dict) else None
            if not isinstance(name, str) or not name:
                raise WxError(40063, "button.replace_name is required")
            if _blen(name) > 128:
                raise WxError(40058, "button.replace_name is too long")
        if new_card is not None:
            validate_card(new_card)
            if new_card.get("task_id") not in (None, card.task_id):
                raise WxError(42016, "template_card.task_id must be the original task_id")
        targets: dict[str, CardCopy] = {}
        invalid: list[str] = []
        if body.get("atall") in (1, "1", True):
            targets = dict(card.copies)
        else:
            userids = body.get("userids")
            partyids = body.get("partyids")
            tagids = body.get("tagids")
            if not userids and not partyids and not tagids:
                raise WxError(40063, "give userids, partyids, tagids or atall=1")
            if userids is not None:
                if not isinstance(userids, list) or len(userids) > 1000 or not all(isinstance(x, str) for x in userids):
                    raise WxError(40058, "userids must be a list of at most 1000 userids")
                for uid in userids:
                    c = card.copies.get(uid.lower())
                    if c is None:
                        invalid.append(uid)
                    else:
                        targets[uid.lower()] = c
            if partyids is not None:
                if not isinstance(partyids, list) or len(partyids) > 100:
                    raise WxError(40058, "partyids must be a list of at most 100 department ids")
                for pid in partyids:
                    if pid in self.directory.departments:
                        for u in self.directory.users_in(self.directory.subtree(pid)):
                            c = card.copies.get(u.userid.lower())
                            if c is not None:
                                targets[u.userid.lower()] = c
        rc.used_at = now
        for c in targets.values():
            if new_card is not None:
                c.template = dict(new_card, task_id=card.task_id)
                c.state = "card_replaced"
                c.replace_name = None
            else:
                c.state = "button_replaced"
                c.replace_name = button["replace_name"]
            c.updated_by, c.updated_at = "api", now
            c.updates += 1
        return {"errcode": 0, "errmsg": "ok", "invaliduser": invalid}

    # -- recall -----------------------------------------------------------------------------
    def recall(self, body: dict) -> dict:
        msgid = body.get("msgid")
        if not isinstance(msgid, str) or not msgid:
            raise WxError(40063, "msgid is required")
        msg = self.messages.get(msgid)
        if msg is None or msg["via"] != "api":
            raise WxError(40058, "unknown msgid (or sent by another app)")
        if self.sim.clock.now() - msg["at"] > 24 * 3600:
            raise WxError(42052, "only messages from the last 24 hours can be recalled")
        msg["recalled"] = True
        if msg["task_id"] and msg["task_id"] in self.cards:
            for c in self.cards[msg["task_id"]].copies.values():
                if c.msgid == msgid:
                    c.state = "recalled"
        return {"errcode": 0, "errmsg": "ok"}

    # -- a member taps a card (the control API) ------------------------------------------------
    def tap(self, userid: str, task_id: str, key: str | None, selected: list | None, force: bool) -> dict:
        """The callback fields for a tap on `task_id`'s card by `userid`. Raises LookupError/ValueError."""
        card = self.cards.get(task_id)
        if card is None:
            raise LookupError(f"no card with task_id {task_id} was delivered")
        copy = card.copies.get(userid.lower())
        if copy is None:
            raise LookupError(f"{userid} did not receive the card {task_id}")
        tpl = copy.template
        if not copy.clickable and not force:
            shown = f"'{copy.replace_name}'" if copy.replace_name else copy.state
            raise PermissionError(
                f"{userid}'s card {task_id} is no longer clickable ({shown}); "
                "pass force=true to simulate a tap that raced the update"
            )
        ctype = tpl.get("card_type")
        fields = {"TaskId": task_id, "CardType": ctype}
        if ctype == "button_interaction":
            keys = [b["key"] for b in tpl.get("button_list", []) if b.get("type", 0) == 0 and b.get("key")]
            if key is None and len(keys) == 1:
                key = keys[0]
            if key not in keys:
                raise ValueError(f"button key must be one of {keys}")
            event = "template_card_event"
        elif ctype in ("vote_interaction", "multiple_interaction"):
            submit = tpl.get("submit_button", {}).get("key")
            if key not in (None, submit):
                raise ValueError(f"the submit button's key is {submit!r}")
            key = submit
            event = "template_card_event"
            if selected is None:
                if ctype == "vote_interaction":
                    box = tpl.get("checkbox", {})
                    selected = [
                        {
                            "question_key": box.get("question_key"),
                            "option_ids": [box.get("option_list", [{}])[0].get("id")],
                        }
                    ]
                else:
                    selected = [
                        {
                            "question_key": s.get("question_key"),
                            "option_ids": [s.get("selected_id") or s.get("option_list", [{}])[0].get("id")],
                        }
                        for s in tpl.get("select_list", [])
                    ]
        else:
            actions = [a["key"] for a in (tpl.get("action_menu") or {}).get("action_list", [])]
            if key not in actions:
                raise ValueError(f"action_menu key must be one of {actions}")
            event = "template_card_menu_event"
        code = self.new_response_code(task_id, "event", copy.userid)
        fields = {"Event": event, "EventKey": key, **fields, "ResponseCode": code}
        if selected:
            fields["SelectedItems"] = {
                "SelectedItem": [
                    {
                        "QuestionKey": s.get("question_key", ""),
                        "OptionIds": {"OptionId": [str(o) for o in s.get("option_ids", [])]},
                    }
                    for s in selected
                ]
            }
        copy.clicks.append({"key": key, "at": self.sim.clock.now(), "forced": bool(force and not copy.clickable)})
        return fields

    def apply_passive_reply(self, userid: str, reply: dict, event_fields: dict | None) -> str | None:
        """What the member sees after a passive reply; returns a short note for the control API."""
        mtype = reply.get("MsgType")
        now = self.sim.clock.now()
        if mtype == "update_button" and event_fields and event_fields.get("TaskId"):
            card = self.cards.get(event_fields["TaskId"])
            copy = card.copies.get(userid.lower()) if card else None
            name = (reply.get("Button") or {}).get("ReplaceName") if isinstance(reply.get("Button"), dict) else None
            if copy is not None and name:
                copy.state, copy.replace_name = "button_replaced", name
                copy.updated_by, copy.updated_at = "passive_reply", now
                copy.updates += 1
                return f"card {card.task_id} of {userid} now shows '{name}'"
            return "update_button ignored: no card or no ReplaceName"
        if mtype == "update_template_card" and event_fields and event_fields.get("TaskId"):
            card = self.cards.get(event_fields["TaskId"])
            copy = card.copies.get(userid.lower()) if card else None
            if copy is not None:
                copy.state, copy.replace_name = "card_replaced", None
                copy.template = {"passive_reply": reply.get("TemplateCard")}
                copy.updated_by, copy.updated_at = "passive_reply", now
                copy.updates += 1
                return f"card {card.task_id} of {userid} replaced"
            return "update_template_card ignored: no card"
        if mtype in ("text", "news", "image", "voice", "video", "markdown", "mpnews"):
            self.seq += 1
            msg = {
                "msgid": "passive-" + secrets.token_hex(8),
                "seq": self.seq,
                "at": now,
                "via": "passive_reply",
                "msgtype": mtype,
                "content": {
                    k: v for k, v in reply.items() if k not in ("ToUserName", "FromUserName", "CreateTime", "MsgType")
                },
                "delivered": [userid],
                "dropped": [],
                "already_had_task": [],
                "invaliduser": [],
                "invalidparty": [],
                "invalidtag": [],
                "task_id": None,
                "recalled": False,
                "safe": 0,
            }
            self._record(msg)
            return f"{userid} sees a {mtype} reply"
        return None

    # -- views ----------------------------------------------------------------------------------
    def list(
        self,
        userid: str | None = None,
        msgtype: str | None = None,
        task_id: str | None = None,
        since: int = 0,
        limit: int = 100,
    ) -> list[dict]:
        ids = self.inbox.get(userid.lower(), []) if userid else self.order
        out = []
        for mid in ids:
            m = self.messages[mid]
            if m["seq"] <= since or (msgtype and m["msgtype"] != msgtype) or (task_id and m["task_id"] != task_id):
                continue
            view = dict(m)
            if len(view["delivered"]) > 50:
                view["delivered_count"] = len(view["delivered"])
                view["delivered"] = view["delivered"][:50] + ["…"]
            else:
                view["delivered_count"] = len(view["delivered"])
            out.append(view)
            if len(out) >= limit:
                break
        return out
