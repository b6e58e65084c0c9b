"""`/wecom/callback` and `/wecom/contacts/callback`: verify, decrypt, dedupe, dispatch, reply.

Verification is separate from handling: nothing reaches a handler unless its signature,
ciphertext and receive id (our corp id) all check out. Each delivery is handled once: its key
(sha1 of the decrypted plaintext: WeCom re-encrypts retries, the plaintext stays the same) is
inserted in the same transaction as the handler's writes and deferred work, and the response
is sent only after that commit. A retry finds the key and gets the stored reply again.

Speed (bench/callback.py). The endpoint speaks ASGI itself: no Request/Response objects on the
way. Deliveries that are ready at the same moment share one transaction (group commit): each
handler runs in order inside it, one statement records all their keys, and every response waits
for that commit. A duplicate among them rolls the group back and is answered with its stored
reply while the others are applied again; a handler that raises sends the group back to one
transaction per delivery, so only its own delivery fails. With SQLite the transaction runs on
the event loop (it takes microseconds); with PostgreSQL it runs on one store thread per
process, so the loop keeps reading requests while a commit waits for the disk.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from urllib.parse import unquote_plus

import peewee
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bot import tasks
from bot.crypto import CryptoError, InvalidReceiveId, InvalidSignature, WeComCrypto
from bot.logs import new_trace_id
from bot.ops import metrics
from bot.router import Context, Inbound, Router
from bot.xml import MAX_BODY, XMLError, parse
from store import clock, db
from store.db import is_postgres, write_transaction
from store.models import Delivery

log = logging.getLogger("wqbot.callback")

_QUERY = ("msg_signature", "timestamp", "nonce")
_TEXT = b"text/plain; charset=utf-8"
_XML = b"application/xml"
MAX_GROUP = 64  # deliveries per transaction
# PostgreSQL: groups in flight at once per process. 2 and 3 were measured: smaller groups, ~7%
# more CPU per callback, no more throughput (bench/callback.py).
PG_LANES = 1


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


def _plain(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status)


async def read_capped(request: Request, limit: int = MAX_BODY) -> bytes:
    """A Starlette request's body, refused past `limit` bytes."""
    return await _read_body(request.scope, request.receive, limit)


async def _read_body(scope, receive, limit: int = MAX_BODY) -> bytes:
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


async def _send(send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Delivery:
    """One verified delivery on its way through a group transaction."""

    __slots__ = ("key", "kind", "msg", "ctx", "handler", "context", "reply", "future")

    def __init__(self, key, kind, msg, ctx, handler):
        self.key, self.kind, self.msg, self.ctx, self.handler = key, kind, msg, ctx, handler
        # The request's context (its trace id; deferred work lands in it): the handler runs in
        # it, wherever the transaction runs, and the outbox is enqueued from it after commit.
        self.context = contextvars.copy_context()
        self.reply = None
        self.future = None


class _Duplicates(Exception):
    def __init__(self, keys: set[str]):
        self.keys = keys


class CallbackEndpoint:
    """One WeCom callback URL. `endpoint` is "app" (接收消息) or "contacts" (通讯录同步)."""

    def __init__(self, crypto: WeComCrypto | None, router: Router, settings, endpoint: str):
        self.crypto = crypto
        self.router = router
        self.settings = settings
        self.endpoint = endpoint
        self._group: _GroupCommit | None = None

    # -- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        started = time.perf_counter()
        try:
            status, body, content_type = await self._serve(scope, receive)
        except BadRequest as e:
            status, body, content_type = e.status, e.message.encode(), _TEXT
        except _ClientGone:
            return
        await _send(send, status, body, content_type)
        metrics.callback_status(
            self.endpoint, scope["method"], status, time.perf_counter() - started, scope.get("wqbot.kind")
        )

    async def handle(self, request: Request) -> Response:
        """The same, for a caller holding a Starlette Request."""
        try:
            status, body, content_type = await self._serve(request.scope, request.receive)
        except BadRequest as e:
            return _plain(e.status, e.message)
        return Response(body, status_code=status, headers={"content-type": content_type.decode()})

    async def _serve(self, scope, receive) -> tuple[int, bytes, bytes]:
        if self.crypto is None:
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
                echo = self.crypto.verify_url(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
            except CryptoError as e:
                return self._refuse(e)
            return 200, echo.encode(), _TEXT
        if method != "POST":
            return 405, b"use GET (URL check) or POST (messages)", _TEXT
        if missing:
            raise BadRequest(400, "missing query parameter: " + ", ".join(missing))
        body = await _read_body(scope, receive)
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
        scope["wqbot.kind"] = msg.kind
        return await self._dispatch(msg, plaintext)

    def _refuse(self, e: CryptoError) -> tuple[int, bytes, bytes]:
        status = 403 if isinstance(e, (InvalidSignature, InvalidReceiveId)) else 400
        log.warning("callback refused", extra={"endpoint": self.endpoint, "check": e.check})
        return status, f"{e.check}: {e.message}".encode(), _TEXT

    def _route(self, msg: Inbound, plaintext: str) -> _Delivery | None:
        """The delivery to apply, or None when it is acknowledged without being applied."""
        kind = msg.kind
        handler = self.router.resolve(msg)
        if handler is None:
            log.debug("no handler", extra={"kind": kind, "endpoint": self.endpoint})
            return None
        if not self.settings.wecom_enabled:
            log.info("WECOM_ENABLED=false: verified but not applied", extra={"kind": kind})
            return None
        key = self.endpoint[0] + hashlib.sha1(plaintext.encode()).hexdigest()
        ctx = Context(settings=self.settings, endpoint=self.endpoint, trace_id=new_trace_id())
        return _Delivery(key, kind, msg, ctx, handler)

    async def _dispatch(self, msg: Inbound, plaintext: str) -> tuple[int, bytes, bytes]:
        d = self._route(msg, plaintext)
        if d is None:
            return 200, b"", _TEXT
        try:
            reply_xml = await self._group_for_loop().apply(d)
        except Exception:
            log.exception("handler failed; WeCom will retry", extra={"kind": d.kind, "delivery": d.key})
            return 500, b"temporarily unable to apply this delivery; it will be retried", _TEXT
        d.context.run(tasks.enqueue_outbox)
        if not reply_xml:
            return 200, b"", _TEXT
        return 200, self.crypto.encrypt_reply(reply_xml).encode(), _XML

    def dispatch(self, msg: Inbound, plaintext: str) -> Response:
        """Apply one delivery in its own transaction, synchronously (no event loop needed)."""
        d = self._route(msg, plaintext)
        if d is None:
            return _plain(200, "")
        try:
            reply_xml = self._apply(d.key, d.kind, d.msg, d.ctx, d.handler)
        except Exception:
            log.exception("handler failed; WeCom will retry", extra={"kind": d.kind, "delivery": d.key})
            return _plain(500, "temporarily unable to apply this delivery; it will be retried")
        tasks.enqueue_outbox()
        if not reply_xml:
            return _plain(200, "")
        return Response(self.crypto.encrypt_reply(reply_xml), media_type="application/xml")

    # -- applying deliveries ------------------------------------------------------------------
    def _group_for_loop(self) -> _GroupCommit:
        loop = asyncio.get_running_loop()
        group = self._group
        if group is None or group.loop is not loop:  # a new loop (TestClient makes one per client)
            group = self._group = _GroupCommit(self, loop)
        return group

    def _apply(self, key: str, kind: str, msg: Inbound, ctx: Context, handler) -> str | None:
        """Run the handler and record the delivery key in one transaction.

        The key is inserted last, with the reply, so the common case costs a single write; a
        retry (or a racing twin) hits the primary key, rolls back whatever the handler did, and
        answers with the reply stored by the first delivery."""
        try:
            with write_transaction():
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

    def _run_handler(self, d: _Delivery) -> None:
        tasks.discard_pending()  # this delivery's deferred work, from an empty list
        reply = d.handler(d.msg, d.ctx)
        d.reply = reply.to_xml(d.msg.sender, self.settings.wecom_corp_id) if reply is not None else None

    def _apply_group(self, group: list[_Delivery]) -> list[tuple[bool, object]]:
        """Apply deliveries together; per delivery (True, reply XML or None) or (False, error)."""
        first: dict[str, _Delivery] = {}
        for d in group:  # twins (one delivery twice in the group) share the first one's outcome
            first.setdefault(d.key, d)
        todo = list(first.values())
        outcome: dict[str, tuple[bool, object]] = {}
        for _ in range(3):
            if not todo:
                break
            try:
                stored = self._commit_together(todo)
            except Exception:
                # A handler (or the store) failed: one transaction each, so only that one fails.
                break
            if stored is None:  # committed
                outcome.update((d.key, (True, d.reply)) for d in todo)
                todo = []
                break
            # Rolled back: these were delivered before. Answer them as before; redo the rest.
            for key, reply in stored.items():
                log.info("duplicate delivery", extra={"delivery": key})
                outcome[key] = (True, reply)
            todo = [d for d in todo if d.key not in stored]
        for d in todo:
            try:
                outcome[d.key] = (True, d.context.run(self._apply, d.key, d.kind, d.msg, d.ctx, d.handler))
            except Exception as e:
                outcome[d.key] = (False, e)
        return [outcome[d.key] for d in group]

    def _commit_together(self, todo: list[_Delivery]) -> dict[str, str | None] | None:
        """One transaction for `todo`: None once committed; if some were delivered before, the
        transaction is rolled back and their stored replies are returned."""
        try:
            with write_transaction():
                for d in todo:
                    d.context.run(self._run_handler, d)
                fresh = _record(todo)
                if len(fresh) != len(todo):
                    raise _Duplicates({d.key for d in todo} - fresh)
        except BaseException as e:
            for d in todo:
                d.context.run(tasks.discard_pending)
            if not isinstance(e, _Duplicates):
                raise
            return _stored_replies(e.keys)
        return None


class CallbackFastPath:
    """ASGI in front of the whole app (what `wqbot serve` serves): GET and POST on the callback
    URLs go straight to their CallbackEndpoint; everything else, lifespan included, goes to the
    app. Starlette's middleware and its walk over every route cost a callback ~5-10 µs of CPU
    (bench/callback.py) and give it nothing: the endpoint answers every outcome itself, and an
    unexpected error still becomes a 500 (uvicorn's). Middleware added to the app does not see
    these two URLs."""

    def __init__(self, app):
        from starlette.routing import Route

        self.app = app
        self.endpoints = {
            r.path: r.endpoint
            for r in getattr(app, "routes", ())
            if isinstance(r, Route)
            and isinstance(r.endpoint, CallbackEndpoint)
            and "{" not in r.path
            and {"GET", "POST"} <= (r.methods or set())
        }

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope.get("root_path") and scope["method"] in ("GET", "POST"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                return await endpoint(scope, receive, send)
        await self.app(scope, receive, send)

    def __getattr__(self, name):  # app.state, app.routes… of the app behind
        return getattr(self.app, name)


# -- the group commit ---------------------------------------------------------------------------
class _GroupCommit:
    """Collects deliveries on one event loop and applies them in groups.

    While a group's transaction runs, new deliveries wait; when it ends they form the next
    group. Under load each transaction (and each disk flush) carries many deliveries; alone, a
    delivery waits for nothing but its own. Every future is resolved only after its commit.
    With PostgreSQL, `PG_LANES` groups may be in flight at once, each on its own store thread
    and connection: while one waits for its disk flush the next is already being applied."""

    def __init__(self, endpoint: CallbackEndpoint, loop: asyncio.AbstractEventLoop):
        self.endpoint = endpoint
        self.loop = loop
        self.waiting: list[_Delivery] = []
        self.free = PG_LANES if is_postgres() else 1  # lanes not running a group

    def apply(self, d: _Delivery) -> asyncio.Future:
        d.future = self.loop.create_future()
        self.waiting.append(d)
        if self.free:
            self.free -= 1
            self.loop.call_soon(self._next)  # after the deliveries ready in this turn of the loop
        return d.future

    def _next(self) -> None:
        """One lane takes the waiting deliveries as its next group, or goes idle."""
        group, self.waiting = self.waiting[:MAX_GROUP], self.waiting[MAX_GROUP:]
        if not group:
            self.free += 1
            return
        if is_postgres():
            f = self.loop.run_in_executor(_store_threads(), _on_usable_connection, self.endpoint._apply_group, group)
            f.add_done_callback(lambda f: self._settle(group, f))
        else:
            try:
                outcomes = self.endpoint._apply_group(group)
            except BaseException as e:  # a bug in the above: every delivery of the group fails
                outcomes = [(False, e)] * len(group)
            self._resolve(group, outcomes)

    def _settle(self, group: list[_Delivery], f: asyncio.Future) -> None:
        e = f.exception() if not f.cancelled() else asyncio.CancelledError()
        self._resolve(group, [(False, e)] * len(group) if e else f.result())

    def _resolve(self, group: list[_Delivery], outcomes: list[tuple[bool, object]]) -> None:
        for d, (ok, value) in zip(group, outcomes, strict=True):
            if not d.future.done():
                if ok:
                    d.future.set_result(value)
                else:
                    d.future.set_exception(value)
        self.loop.call_soon(self._next)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _store_threads() -> ThreadPoolExecutor:
    """The threads (one PostgreSQL connection each) that run callback transactions: one per lane."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=PG_LANES, thread_name_prefix="wqbot-callback-store")
    return _executor


def _on_usable_connection(fn, *args):
    """Run fn on the store thread's connection, first replacing it if it broke (PostgreSQL was
    restarted, the connection was cut): the group that met the break failed and will be
    retried by WeCom; the next one reconnects instead of failing for good."""
    database = db.obj
    if not database.is_closed() and not database.is_connection_usable():
        try:
            database.close()
        except Exception:  # already unusable: drop it anyway
            database._state.reset()
    return fn(*args)


# -- the delivery table, in as few statements as possible ---------------------------------------
@lru_cache(maxsize=None)
def _names() -> tuple[str, list[str]]:
    meta = Delivery._meta
    return meta.table_name, [meta.fields[f].column_name for f in ("key", "kind", "received_at", "reply")]


# One statement per group, its RETURNING naming the keys it inserted. SQLite has RETURNING from
# 3.35; with an older library, and for a lone delivery (RETURNING costs it ~6 µs more than
# rowcount), each row is its own statement, its rowcount saying the same.
SQLITE_RETURNING = sqlite3.sqlite_version_info >= (3, 35)


@lru_cache(maxsize=4 * MAX_GROUP)
def _insert_sql(postgres: bool, n: int, returning: bool = True) -> str:
    table, cols = _names()
    param = "%s" if postgres else "?"
    rows = ", ".join(["(" + ", ".join([param] * 4) + ")"] * n)
    sql = (
        f'INSERT INTO "{table}" (' + ", ".join(f'"{c}"' for c in cols) + f") VALUES {rows} "
        f'ON CONFLICT ("{cols[0]}") DO NOTHING'
    )
    return sql + f' RETURNING "{cols[0]}"' if returning else sql


def _record(todo: list[_Delivery]) -> set[str]:
    """Insert the delivery keys (with their replies) unless present; the keys inserted."""
    database = db.obj
    now = clock.now()
    postgres = is_postgres(database)
    if postgres or (SQLITE_RETURNING and len(todo) > 1):
        params = []
        for d in todo:
            params += (d.key, d.kind[:64], now, d.reply)
        return {row[0] for row in database.execute_sql(_insert_sql(postgres, len(todo)), params).fetchall()}
    sql, fresh = _insert_sql(False, 1, returning=False), set()
    for d in todo:
        if database.execute_sql(sql, (d.key, d.kind[:64], now, d.reply)).rowcount == 1:
            fresh.add(d.key)
    return fresh


def _stored_replies(keys: set[str]) -> dict[str, str | None]:
    return {
        row.key: row.reply for row in Delivery.select(Delivery.key, Delivery.reply).where(Delivery.key.in_(list(keys)))
    }
