"""Helpers tests share: build what WeCom would send to a callback URL."""

from __future__ import annotations

import os
import time

from bot.callback.xml import document
from bot.crypto import WeComCrypto

CORP = "ww1a2b3c4d5e6f7a8b"


def app_crypto(settings) -> WeComCrypto:
    return WeComCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)


def contacts_crypto(settings) -> WeComCrypto:
    return WeComCrypto(settings.wecom_contacts_token, settings.wecom_contacts_aes_key, settings.wecom_corp_id)


def signed(crypto: WeComCrypto, plaintext: str, timestamp: str | None = None, nonce: str | None = None):
    """(query params, body) of a POST WeCom would make with `plaintext` inside."""
    ts = timestamp or str(int(time.time()))
    nonce = nonce or os.urandom(4).hex()
    enc, sig = crypto.encrypt_message(plaintext, ts, nonce)
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body


def message(**fields) -> str:
    base = {"ToUserName": CORP, "FromUserName": "lisi", "CreateTime": int(time.time())}
    return document({**base, **fields})


def click(key: str, user: str = "lisi", **extra) -> str:
    return message(FromUserName=user, MsgType="event", Event="click", EventKey=key, AgentID=1000002, **extra)


def text(content: str, user: str = "lisi", msg_id: int = 1) -> str:
    return message(FromUserName=user, MsgType="text", Content=content, MsgId=msg_id, AgentID=1000002)


def decrypt_reply(crypto: WeComCrypto, body: str) -> str:
    from bot.callback.xml import parse

    env = parse(body)
    return crypto.decrypt_message(env["MsgSignature"], env["TimeStamp"], env["Nonce"], env["Encrypt"])


def wait_until_serving(url: str, proc, log_path=None, timeout: float = 20.0, **httpx_kwargs):
    """GET `url` until a process we started answers it; fail with its log tail if it dies or
    never answers. Returns the first response."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2, **httpx_kwargs)
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                tail = ""
                if log_path is not None and os.path.exists(log_path):
                    with open(log_path, encoding="utf-8", errors="replace") as f:
                        tail = f.read()[-2000:]
                raise AssertionError(f"{url} never answered; log tail: {tail}") from None
            time.sleep(0.1)
