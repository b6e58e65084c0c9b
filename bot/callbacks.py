"""`/wecom/callback` and `/wecom/contacts/callback`: verify, decrypt, dedupe, dispatch, reply.

Verification is separate from handling: nothing reaches a handler unless its signature,
ciphertext and receive id (our corp id) all check out. Each delivery is handled once: its key
(sha1 of the decrypted plaintext: WeCom re-encrypts retries, the plaintext stays the same) is
inserted in the same transaction as the handler's writes and deferred work, and the response
is sent only after that commit. A retry finds the key and gets the stored reply again.
"""
from __future__ import annotations

import hashlib
import logging
import time

import peewee
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bot import tasks
from bot.logs import new_trace_id
from bot.ops import metrics
from bot.crypto import CryptoError, InvalidReceiveId, InvalidSignature, WeComCrypto
from bot.router import Context, Inbound, Router
from bot.xml import MAX_BODY, XMLError, parse
from store import db
from store.models import Delivery

log = logging.getLogger("wqbot.callback")

_QUERY = ("msg_signature", "timestamp", "nonce")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _plain(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status)


async def read_capped(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise BadRequest(400, "Content-Length is not a number") from None
        if too_big:
            raise BadRequest(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class CallbackEndpoint:
    """One WeCom callback URL. `endpoint` is "app" (接收消息) or "contacts" (通讯录同步)."""

    def __init__(self, crypto: WeComCrypto | None, router: Router, settings, endpoint: str):
        self.crypto = crypto
        self.router = router
        self.settings = settings
        self.endpoint = endpoint

    async def __call__(self, scope, receive, send):
        request = Request(scope, receive)
        started = time.perf_counter()
        try:
            response = await self.handle(request)
        except BadRequest as e:
            response = _plain(e.status, e.message)
        await response(scope, receive, send)
        metrics.callback_status(self.endpoint, request.method, response.status_code,
                                time.perf_counter() - started, scope.get("wqbot.kind"))

    async def handle(self, request: Request) -> Response:
        if self.crypto is None:
            return _plain(404, "contacts callback is off: set WECOM_CONTACTS_TOKEN and WECOM_CONTACTS_AES_KEY")
        q = request.query_params
        missing = [k for k in _QUERY if not q.get(k)]
        if request.method == "GET":
            if not q.get("echostr"):
                missing.append("echostr")
            if missing:
                raise BadRequest(400, "missing query parameter: " + ", ".join(missing))
            try:
                echo = self.crypto.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
            except CryptoError as e:
                return self._refuse(e)
            return _plain(200, echo)
        if request.method != "POST":
            return _plain(405, "use GET (URL check) or POST (messages)")
        if missing:
            raise BadRequest(400, "missing query parameter: " + ", ".join(missing))
        body = await read_capped(request)
        try:
            envelope = parse(body)
        except XMLError as e:
            raise BadRequest(400, str(e)) from None
        encrypted = envelope.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise BadRequest(400, "XML has no Encrypt element")
        try:
            plaintext = self.crypto.decrypt_message(q["msg_signature"], q["timestamp"], q["nonce"], encrypted)
        except CryptoError as e:
            return self._refuse(e)
        try:
            msg = Inbound(parse(plaintext))
        except XMLError as e:
            raise BadRequest(400, f"decrypted message: {e}") from None
        request.scope["wqbot.kind"] = msg.kind
        return self.dispatch(msg, plaintext)

    def _refuse(self, e: CryptoError) -> Response:
        status = 403 if isinstance(e, (InvalidSignature, InvalidReceiveId)) else 400
        log.warning("callback refused", extra={"endpoint": self.endpoint, "check": e.check})
        return _plain(status, f"{e.check}: {e.message}")

    def dispatch(self, msg: Inbound, plaintext: str) -> Response:
        s = self.settings
        kind = msg.kind
        handler = self.router.resolve(msg)
        if handler is None:
            log.debug("no handler", extra={"kind": kind, "endpoint": self.endpoint})
            return _plain(200, "")
        if not s.wecom_enabled:
            log.info("WECOM_ENABLED=false: verified but not applied", extra={"kind": kind})
            return _plain(200, "")
        key = self.endpoint[0] + hashlib.sha1(plaintext.encode()).hexdigest()
        ctx = Context(settings=s, endpoint=self.endpoint, trace_id=new_trace_id())
        try:
            reply_xml = self._apply(key, kind, msg, ctx, handler)
        except Exception:
            log.exception("handler failed; WeCom will retry", extra={"kind": kind, "delivery": key})
            return _plain(500, "temporarily unable to apply this delivery; it will be retried")
        tasks.enqueue_outbox()
        if not reply_xml:
            return _plain(200, "")
        return Response(self.crypto.encrypt_reply(reply_xml), media_type="application/xml")

    def _apply(self, key: str, kind: str, msg: Inbound, ctx: Context, handler) -> str | None:
        """Run the handler and record the delivery key in one transaction.

        The key is inserted last, with the reply, so the common case costs a single write; a
        retry (or a racing twin) hits the primary key, rolls back whatever the handler did, and
        answers with the reply stored by the first delivery."""
        try:
            with db.atomic():
                reply = handler(msg, ctx)
                reply_xml = reply.to_xml(msg.sender, self.settings.wecom_corp_id) if reply is not None else None
                Delivery.insert(key=key, kind=kind[:64], reply=reply_xml).execute()
                return reply_xml
        except peewee.IntegrityError:
            tasks.discard_pending()
            first = Delivery.get_or_none(Delivery.key == key)
            if first is None:
                raise  # the handler's own constraint failed
            log.info("duplicate delivery", extra={"kind": kind, "delivery": key})
            return first.reply
        except BaseException:
            tasks.discard_pending()
            raise
