"""What a refused callback tells the operator, and the one log record of an accepted one.

A callback that fails a crypto check is answered with `check: what failed; fix: what to change`,
and the log record of the refusal carries the same fix text, so the log and WeCom's own
"回调URL验证失败" lead to the same setting. A decryption that fails on its padding, length or
receive id after the signature matched means the Token is right and the EncodingAESKey is not:
that fix names the AES key first.
"""

from __future__ import annotations

import logging
import time

from bot.crypto import CryptoError
from bot.observability.logs import LogThrottle, log_later
from bot.observability.problems import report_soon

from .router import Inbound

log = logging.getLogger("wqbot.callback")

# per endpoint: (Token variable, EncodingAESKey variable, the console page both come from)
KEYS = {
    "app": ("WECOM_TOKEN", "WECOM_AES_KEY", "应用管理 → 自建应用 → (the 微签 app) → 接收消息 → 设置API接收"),
    "contacts": ("WECOM_CONTACTS_TOKEN", "WECOM_CONTACTS_AES_KEY", "管理工具 → 通讯录同步 → 设置接收事件服务器"),
}
# the console's 最近错误 gets a refusal at most this often per endpoint and check (a flood of
# forged callbacks is one line, not a write per request)
_recorded = LogThrottle(interval=60.0, max_keys=32)


def fix_for(endpoint: str, check: str) -> str:
    token, aes_key, page = KEYS.get(endpoint, KEYS["app"])
    if check == "signature":
        return f"{token} differs from the Token at {page} (or the request was altered): copy the Token again"
    if check in ("padding", "length", "receive_id"):
        fix = (
            f"{aes_key} is not the EncodingAESKey at {page} (the signature matched, so {token} is right): copy it again"
        )
        if check == "receive_id":
            fix += "; if it is, WECOM_CORP_ID is not this corp's 企业ID (我的企业 → 企业信息)"
        return fix
    if check == "base64":
        return "Encrypt arrived altered: a proxy in front of wqbot must pass the body and query unchanged ('+' kept)"
    return f"compare {token} and {aes_key} with {page}"


def refused(endpoint: str, e: CryptoError) -> str:
    """Log the refusal (with its fix) and return the answer's text: the same fix."""
    fix = fix_for(endpoint, e.check)
    text = f"{e.check}: {e.message}; fix: {fix}"
    log.warning("callback refused", extra={"endpoint": endpoint, "check": e.check, "fix": fix})
    # 最近错误 only for failures past the signature: the sender knew the Token, so it is WeCom
    # with a key that differs from ours. Anyone can send a bad signature; that is logged only.
    if e.check != "signature" and _recorded.allow(f"{endpoint}:{e.check}")[0]:
        report_soon(f"callback.{endpoint}", f"callback refused ({e.check}): {e.message}", fix)
    return text


def accepted(endpoint: str, msg: Inbound, started: float) -> None:
    """The one INFO record of an accepted callback ("did WeCom call us?"): endpoint, kind, the
    member it concerns, trace id and milliseconds. Logged after the answer was sent; the event loop
    pays a level check, a small object and a queue put (`log_later`), the listener thread makes,
    redacts, formats and writes the record (bot/observability/logs.py)."""
    if log.isEnabledFor(logging.INFO):
        ms = round((time.perf_counter() - started) * 1000, 1)
        extra = {"endpoint": endpoint, "kind": msg.kind, "userid": msg.get_str("UserID") or msg.sender, "ms": ms}
        if msg.trace_id:
            extra["trace_id"] = msg.trace_id
        log_later(log, logging.INFO, "callback accepted", extra)
