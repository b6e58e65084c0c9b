"""`/wecom/callback` and `/wecom/contacts/callback`: verify, decrypt, route, apply, reply.

Verification is separate from handling: nothing reaches a handler unless its signature,
ciphertext and receive id (our corp id) all check out. Each delivery is applied once
(bot/callback/deliveries.py), and the answer is sent only after its transaction committed;
deliveries that arrive together share that transaction (bot/callback/group_commit.py).

The endpoint speaks ASGI itself: no Request or Response objects on the way, and every outcome,
bad input included, is answered here with a status and a message saying what to fix.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

from starlette.types import Receive, Scope, Send

from bot import texts
from bot.crypto import CryptoError, InvalidReceiveId, InvalidSignature, WeComCrypto
from bot.observability import metrics
from bot.observability.trace import new_trace_id
from settings import LiveSettings, Settings
from store import clock
from store.db import is_postgres

from . import deliveries, refusal
from .deliveries import VerifiedDelivery
from .group_commit import GroupCommit
from .router import Context, Inbound, Router
from .xml import MAX_BODY, XMLError, parse

log = logging.getLogger("wqbot.callback")

_QUERY = ("msg_signature", "timestamp", "nonce")
_TEXT = b"text/plain; charset=utf-8"
NOT_CONFIGURED = texts.WECOM_NOT_CONFIGURED
_XML = b"application/xml"
# PostgreSQL: groups in flight at once per process. More lanes make smaller groups: more CPU per
# callback and no more throughput (bench/README.md).
PG_LANES = 1


# What WeCom's URL check encrypts: a decimal number of about 19 digits (docs/wecom.md,
# "Callbacks: signature and encryption"). Letters, "-" and "_" pass too in case that changes;
# markup, spaces and length do not.
ECHOSTR_SHAPE = re.compile(r"[0-9A-Za-z_-]{1,64}")
# How far a delivery's timestamp may be from our clock. WeCom retries within seconds to minutes,
# and delivery keys live 72 h: a captured delivery replayed after its key is pruned is refused.
FRESHNESS = 3600


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


async def read_body(scope: Scope, receive: Receive, limit: int = MAX_BODY) -> bytes:
    """The request body, refused past `limit` bytes (by Content-Length before reading)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                too_big = int(value) > limit
            except ValueError:
                raise BadRequest(400, "Content-Length is not a number") from None
            if too_big:
                raise BadRequest(413, f"body larger than {limit} bytes")
            break
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        body += message.get("body", b"")
        if len(body) > limit:
            raise BadRequest(413, f"body larger than {limit} bytes")
        if not message.get("more_body", False):
            return body


def check_fresh(timestamp: str, now: float) -> None:
    """Refuse a delivery stamped more than FRESHNESS seconds from `now` (a replay, or a wrong clock)."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise BadRequest(400, "timestamp: must be Unix seconds")
    if abs(int(timestamp) - now) > FRESHNESS:
        raise BadRequest(
            400,
            f"timestamp {timestamp} is more than {FRESHNESS // 3600} h from this server's clock "
            f"({int(now)}): refused as a possible replay. If WeCom's deliveries all get this, "
            "check the server's clock (NTP).",
        )


def query_params(raw: bytes) -> dict[str, str]:
    """The query string as Starlette reads it (parse_qsl, blanks kept, the last value wins)."""
    out = {}
    for part in raw.decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            if "%" in name or "+" in name:
                name = unquote_plus(name)
            if "%" in value or "+" in value:
                value = unquote_plus(value)
            out[name] = value
    return out


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


CryptoFor = Callable[[Settings], WeComCrypto | None]


class CallbackEndpoint:
    """One WeCom callback URL. `endpoint` is "app" (接收消息) or "contacts" (通讯录同步).

    `crypto` is fixed, or a function of the settings: the console may change the Token and key,
    so each request reads one snapshot of the settings (`LiveSettings.snapshot()`) and the crypto
    is rebuilt only when that snapshot is a new one. The handlers get the same snapshot, so a
    delivery sees one consistent set of settings and pays for the live view once."""

    def __init__(self, crypto: WeComCrypto | None | CryptoFor, router: Router, settings: Settings, endpoint: str):
        self._crypto_for = crypto if callable(crypto) else None
        self._fixed_crypto = None if callable(crypto) else crypto
        self.router = router
        self.settings = settings
        self.endpoint = endpoint
        self._group: GroupCommit[VerifiedDelivery] | None = None
        self._seen: tuple[Settings, WeComCrypto | None] | None = None  # the last snapshot, its crypto

    def view(self) -> tuple[Settings, WeComCrypto | None]:
        """This request's settings and the crypto they give."""
        settings = self.settings
        snapshot = settings.snapshot() if isinstance(settings, LiveSettings) else settings
        seen = self._seen
        if seen is None or seen[0] is not snapshot:
            crypto = self._crypto_for(snapshot) if self._crypto_for is not None else self._fixed_crypto
            self._seen = seen = (snapshot, crypto)
        return seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            status, body, content_type = await self._serve(scope, receive)
        except BadRequest as e:
            status, body, content_type = e.status, e.message.encode(), _TEXT
        except _ClientGone:
            return
        await _send(send, status, body, content_type)
        msg = scope.get("wqbot.msg")
        if msg is not None and status == 200:
            refusal.accepted(self.endpoint, msg, started)
        metrics.callback_status(
            self.endpoint, scope["method"], status, time.perf_counter() - started, scope.get("wqbot.kind")
        )

    async def _serve(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        settings, crypto = self.view()
        if crypto is None and self.endpoint == "app":
            return 503, NOT_CONFIGURED.encode(), _TEXT
        if crypto is None:
            return 404, b"contacts callback is off: set WECOM_CONTACTS_TOKEN and WECOM_CONTACTS_AES_KEY", _TEXT
        q = query_params(scope.get("query_string", b""))
        missing = [k for k in _QUERY if not q.get(k)]
        method = scope["method"]
        if method == "GET":
            if not q.get("echostr"):
                missing.append("echostr")
            if missing:
                raise BadRequest(400, "missing query parameter: " + ", ".join(missing))
            try:
                echo = crypto.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
            except CryptoError as e:
                return self._refuse(e)
            if not ECHOSTR_SHAPE.fullmatch(echo):
                # A captured POST's Encrypt, replayed as a GET, decrypts too: never echo a message.
                log.warning(
                    "URL check refused: the echostr is not shaped like WeCom's", extra={"endpoint": self.endpoint}
                )
                raise BadRequest(400, "echostr: the decrypted value is not a URL-check string (a short token)")
            return 200, echo.encode(), _TEXT
        if method != "POST":
            return 405, b"use GET (URL check) or POST (messages)", _TEXT
        if missing:
            raise BadRequest(400, "missing query parameter: " + ", ".join(missing))
        check_fresh(q["timestamp"], clock.now())
        body = await read_body(scope, receive)
        try:
            envelope = parse(body)
        except XMLError as e:
            raise BadRequest(400, str(e)) from None
        encrypted = envelope.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise BadRequest(400, "XML has no Encrypt element")
        try:
            plaintext = crypto.decrypt_message(q["msg_signature"], q["timestamp"], q["nonce"], encrypted)
        except CryptoError as e:
            return self._refuse(e)
        try:
            msg = Inbound(parse(plaintext))
        except XMLError as e:
            raise BadRequest(400, f"decrypted message: {e}") from None
        scope["wqbot.kind"] = msg.kind
        scope["wqbot.msg"] = msg
        return await self._apply(msg, plaintext, settings, crypto)

    def _refuse(self, e: CryptoError) -> tuple[int, bytes, bytes]:
        status = 403 if isinstance(e, (InvalidSignature, InvalidReceiveId)) else 400
        return status, refusal.refused(self.endpoint, e).encode(), _TEXT

    def delivery(self, msg: Inbound, plaintext: str, settings: Settings | None = None) -> VerifiedDelivery | None:
        """The delivery to apply, or None when it is acknowledged without being applied."""
        settings = settings or self.view()[0]
        kind = msg.kind
        handler = self.router.resolve(msg)
        if handler is None:
            log.debug("no handler", extra={"kind": kind, "endpoint": self.endpoint})
            return None
        if not settings.wecom_enabled:
            log.info("开启企业微信 is off (WECOM_ENABLED): verified but not applied", extra={"kind": kind})
            return None
        key = self.endpoint[0] + hashlib.sha1(plaintext.encode()).hexdigest()
        ctx = Context(settings=settings, endpoint=self.endpoint, trace_id=new_trace_id())
        msg.trace_id = ctx.trace_id  # for the accepted-callback log record
        return VerifiedDelivery(key, kind, msg, ctx, handler)

    async def _apply(
        self, msg: Inbound, plaintext: str, settings: Settings, crypto: WeComCrypto
    ) -> tuple[int, bytes, bytes]:
        d = self.delivery(msg, plaintext, settings)
        if d is None:
            return 200, b"", _TEXT
        try:
            reply_xml = await self._group_for_loop().submit(d)
        except Exception:
            log.exception("handler failed; WeCom will retry", extra={"kind": d.kind, "delivery": d.key})
            return 500, b"temporarily unable to apply this delivery; it will be retried", _TEXT
        if not reply_xml:
            return 200, b"", _TEXT
        assert isinstance(reply_xml, str)
        return 200, crypto.encrypt_reply(reply_xml).encode(), _XML

    def _group_for_loop(self) -> GroupCommit[VerifiedDelivery]:
        loop = asyncio.get_running_loop()
        group = self._group
        if group is None or group.loop is not loop:  # a new loop (TestClient makes one per client)
            if is_postgres():
                executor = deliveries.store_threads(PG_LANES)
                group = GroupCommit(loop, deliveries.on_usable_connection(deliveries.apply), executor, PG_LANES)
            else:
                group = GroupCommit(loop, deliveries.apply)
            self._group = group
        return group
