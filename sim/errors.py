"""WeCom's error answers: errcode plus an errmsg in WeCom's own style.

Real errmsg text carries `, hint: [...], from ip: x.x.x.x, more info at …?e=CODE`; clients must
branch on errcode only (docs/wecom.md, "Server API conventions"), so the emulator adds the same tail to keep them honest."""

from __future__ import annotations

import os
import time

ERRMSG = {
    -1: "system busy",
    40001: "invalid credential",
    40003: "invalid userid",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40022: "invalid sub button level",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40029: "invalid code",
    40031: "invalid userid list",
    40032: "invalid userid list size",
    40056: "invalid agentid",
    40058: "invalid parameter",
    40063: "some parameters are empty",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41008: "missing code",
    41009: "userid missing",
    41011: "agentid missing",
    41010: "url missing",
    41016: "title missing",
    41033: "description missing",
    41102: "menu name missing",
    42001: "access_token expired",
    42014: "invalid task_id",
    42016: "task_id not exist",
    42017: "button key not exist",
    42027: "Template_Card.horizontal_content_list.keyname missing",
    42028: "Template_Card url missing",
    42031: "Template_Card.CardType invalid",
    42033: "Template_Card title missing",
    42035: "Template_Card.horizontal_content_list size invalid",
    42036: "Template_Card.vertical_content_list size invalid",
    42038: "Template_Card.button_list.text missing or invalid",
    42039: "Template_Card.button_list.key missing or invalid",
    42042: "Template_Card.jump_list size invalid",
    42044: "Template_Card.card_image.url missing or invalid",
    42045: "Template_Card.card_action missing or invalid",
    42046: "Template_Card.submit_button.key missing or invalid",
    42047: "Template_Card.select_list size invalid",
    42049: "Template_Card.submit_button.text missing or invalid",
    42051: "Template_Card.action_menu.action_list.key conflict",
    42052: "msgid expired",
    43012: "agent need callback url",
    44004: "empty content",
    45002: "content size out of limit",
    45008: "article size out of limit",
    45009: "api freq out of limit",
    46003: "menu no exist",
    46004: "user no exist",
    48002: "api forbidden",
    48009: "api forbidden for contact assistant, can not read contact detail from new ip",
    50001: "redirect_url not authorised",
    60011: "no privilege to access/modify contact/party/agent",
    60020: "not allow to access from your ip",
    60111: "userid not found",
    60123: "invalid party id",
    81013: "user & party & tag all invalid",
    82001: "All touser & toparty & totag invalid",
    82002: "invalid party list size",
    82003: "invalid tag list size",
    301002: "access_token and agentid mismatch",
}


class WxError(Exception):
    """Raised inside an API handler: the call answers {"errcode": code, "errmsg": …}."""

    def __init__(self, errcode: int, detail: str = "", errmsg: str | None = None):
        self.errcode = errcode
        self.detail = detail
        self.raw_errmsg = errmsg
        super().__init__(f"{errcode} {detail or ERRMSG.get(errcode, '')}")


def errmsg(errcode: int, client_ip: str = "127.0.0.1", detail: str = "", raw: str | None = None) -> str:
    if raw is not None:
        return raw
    text = ERRMSG.get(errcode, "error")
    if detail:
        text = f"{text}: {detail}"
    if errcode == 0:
        return "ok"
    hint = f"{int(time.time())}_{os.urandom(3).hex()}"
    return (
        f"{text}, hint: [{hint}], from ip: {client_ip}, more info at "
        f"https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    )
