"""Helpers tests share: build what WeCom would send to a callback URL, and `CallbackClient`, the one
client that sends it through the ASGI stack `wqbot serve` runs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.app import create_app
from bot.callback import CallbackEndpoint
from bot.callback.xml import document, parse
from bot.crypto import WeComCrypto
from bot.server import stack
from settings import Settings
from store import clock

CORP = "ww1a2b3c4d5e6f7a8b"
APP_URL = "/wecom/callback"
CONTACTS_URL = "/wecom/contacts/callback"


def app_crypto(settings) -> WeComCrypto:
    return WeComCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)


def contacts_crypto(settings) -> WeComCrypto:
    return WeComCrypto(settings.wecom_contacts_token, settings.wecom_contacts_aes_key, settings.wecom_corp_id)


def signed(crypto: WeComCrypto, plaintext: str, timestamp: str | None = None, nonce: str | None = None):
    """(query params, body) of a POST WeCom would make with `plaintext` inside, stamped with wqbot's
    clock (a pinned `clock` included): WeCom's clock and ours agree, or the delivery is stale."""
    ts = timestamp or str(int(clock.now()))
    nonce = nonce or os.urandom(4).hex()
    enc, sig = crypto.encrypt_message(plaintext, ts, nonce)
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body


def webhook_signed_at(secret: str, header: str, raw: bytes) -> int | None:
    """微签's check of X-Wqbot-Signature, written independently of wqbot's signer: the signed
    timestamp when `v1` covers "<t>." + the raw body and `v0` the raw body alone, else None."""
    parts = dict(item.partition("=")[::2] for item in header.split(","))
    if set(parts) != {"t", "v1", "v0"} or not parts["t"].isdigit():
        return None

    def mac(data: bytes) -> str:
        return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()

    v1_ok = hmac.compare_digest(mac(parts["t"].encode() + b"." + raw), parts["v1"])
    v0_ok = hmac.compare_digest(mac(raw), parts["v0"])
    return int(parts["t"]) if v1_ok and v0_ok else None


def message(**fields) -> str:
    base = {"ToUserName": CORP, "FromUserName": "lisi", "CreateTime": int(time.time())}
    return document({**base, **fields})


def click(key: str, user: str = "lisi", **extra) -> str:
    return message(FromUserName=user, MsgType="event", Event="click", EventKey=key, AgentID=1000002, **extra)


def text(content: str, user: str = "lisi", msg_id: int = 1) -> str:
    return message(FromUserName=user, MsgType="text", Content=content, MsgId=msg_id, AgentID=1000002)


def decrypt_reply(crypto: WeComCrypto, body: str) -> str:
    env = parse(body)
    return crypto.decrypt_message(env["MsgSignature"], env["TimeStamp"], env["Nonce"], env["Encrypt"])


def serving(endpoint: CallbackEndpoint) -> ASGIApp:
    """An app with only `endpoint` at the app callback URL, behind the stack `wqbot serve` runs
    (for tests that bring their own router)."""
    return stack(Starlette(routes=[Route(APP_URL, endpoint, methods=["GET", "POST"])]))


@dataclass
class Answer:
    """What wqbot answered a callback: the status, the passive reply decrypted and parsed (None for
    an empty answer or an error), and the raw response."""

    status: int
    reply: dict | None
    response: httpx.Response

    @property
    def text(self) -> str:
        return self.response.text


class CallbackClient(TestClient):
    """WeCom's side of wqbot's callback URLs, through the ASGI stack `wqbot serve` runs:
    `bot.server.stack(create_app(settings))`, i.e. BodyTimeout(CallbackFastPath(app)), unless
    `app` is given (already wrapped as the test needs).

    - `deliver(plaintext)`: sign and POST it as WeCom would, expect 200, return the reply or None;
    - `callback(plaintext)`: the same, any status: an `Answer`;
    - `sign(plaintext)` and `post_signed(params, body)`: for tests that tamper in between;
    - `verify(echostr)`: the URL verification GET, signed;
    - `together(requests)`: POSTs at once on one event loop, straight into the ASGI app, so
      deliveries form groups (the test client sends one request at a time).
    `url` picks the app (APP_URL) or the contacts (CONTACTS_URL) endpoint and its Token and key.
    A reply is decrypted by wechatpy, an implementation of WeCom's crypto independent of ours, as
    WeCom reads it. Any other request (`get`, `post`…) is the test client's, through the same stack."""

    def __init__(self, settings: Settings, app: ASGIApp | None = None, **kwargs: Any):
        super().__init__(stack(create_app(settings, init_store=False)) if app is None else app, **kwargs)
        self.settings = settings

    def crypto(self, url: str = APP_URL) -> WeComCrypto:
        return contacts_crypto(self.settings) if url == CONTACTS_URL else app_crypto(self.settings)

    def sign(self, plaintext: str, url: str = APP_URL, **kwargs) -> tuple[dict, str]:
        return signed(self.crypto(url), plaintext, **kwargs)

    def post_signed(self, params: dict, body: str | bytes, url: str = APP_URL) -> httpx.Response:
        """POST `body` with `params` in the query, as WeCom posts a callback."""
        content = body.encode() if isinstance(body, str) else body
        return self.post(url, params=params, content=content, headers={"content-type": "text/xml"})

    def callback(self, plaintext: str, url: str = APP_URL) -> Answer:
        r = self.post_signed(*self.sign(plaintext, url), url=url)
        reply = self.reply_of(r.text, url) if r.status_code == 200 and r.text else None
        return Answer(r.status_code, reply, r)

    def deliver(self, plaintext: str, url: str = APP_URL) -> dict | None:
        answer = self.callback(plaintext, url)
        assert answer.status == 200, answer.text
        return answer.reply

    def reply_of(self, body: str, url: str = APP_URL) -> dict:
        """A passive reply as WeCom reads it: signature checked and decrypted by wechatpy."""
        s = self.settings
        token, key = (
            (s.wecom_contacts_token, s.wecom_contacts_aes_key)
            if url == CONTACTS_URL
            else (s.wecom_token, s.wecom_aes_key)
        )
        env = parse(body)
        plain = WeChatCrypto(token, key, s.wecom_corp_id).decrypt_message(
            body, env["MsgSignature"], env["TimeStamp"], env["Nonce"]
        )
        reply = parse(plain.decode() if isinstance(plain, bytes) else plain)
        assert reply["FromUserName"] == s.wecom_corp_id, reply
        return reply

    def verify(self, echostr: str, url: str = APP_URL, timestamp: str = "1", nonce: str = "2") -> httpx.Response:
        """GET `url` as WeCom verifies it: `echostr` encrypted and signed with the URL's Token and key."""
        crypto = self.crypto(url)
        enc = crypto.encrypt(echostr)
        params = {"msg_signature": crypto.sign(timestamp, nonce, enc), "timestamp": timestamp, "nonce": nonce}
        return self.get(url, params={**params, "echostr": enc})

    def together(
        self, requests: Iterable[tuple[dict, str]], on_start: Callable[[], None] | None = None, url: str = APP_URL
    ) -> list[tuple[int, str]]:
        """POST every (params, body) at once on one event loop; (status, body) of each, in order.
        `on_start` runs as each response starts (before its body is sent)."""

        async def main():
            return await asyncio.gather(*(self._asgi_post(url, p, b, on_start) for p, b in requests))

        return asyncio.run(main())

    async def _asgi_post(self, url: str, params: dict, body: str, on_start) -> tuple[int, str]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": url,
            "raw_path": url.encode(),
            "query_string": urlencode(params).encode(),
            "root_path": "",
            "headers": [(b"content-type", b"text/xml")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent, status, out = False, 0, []

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body.encode(), "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if on_start:
                    on_start()
            else:
                out.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(out).decode()


class QueryLog(logging.Handler):
    """Counts the SQL statements peewee runs (its DEBUG log), by verb and table."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record):
        sql = record.msg[0] if isinstance(record.msg, tuple) else str(record.getMessage())
        self.statements.append(str(sql))

    def writes(self, tables=("user", "department", "user_department", "directory_change")) -> list[str]:
        pat = re.compile(r'^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+"(\w+)"', re.I)
        out = []
        for s in self.statements:
            m = pat.match(s)
            if m and m.group(2) in tables:
                out.append(s)
        return out

    def __len__(self):
        return len(self.statements)


@contextlib.contextmanager
def count_queries() -> Iterator[QueryLog]:
    logger = logging.getLogger("peewee")
    h = QueryLog()
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(h)
    try:
        yield h
    finally:
        logger.removeHandler(h)
        logger.setLevel(old)


def wait_until_serving(url: str, proc, log_path=None, timeout: float = 20.0, **httpx_kwargs):
    """GET `url` until a process we started answers it; fail with its log tail if it dies or
    never answers. Returns the first response."""
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
