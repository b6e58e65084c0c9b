"""A time limit on reading a request's body (slow-loris bodies), as plain ASGI.

uvicorn closes idle keep-alive connections but never times out a body: a client that sends
`Content-Length: 1000` and then a byte a second (or nothing) holds a connection, and the
handler waiting on it, for as long as it likes. BodyTimeout gives the whole body `BODY_TIMEOUT`
seconds from the moment the app starts reading it; past that the client gets a 408, the
connection is closed, and the app sees a disconnect (it stops, as for a client that went away).

Cost: a timer per request (call_later + cancel) would cost about as much as the callback fast
path saves (bench/README.md), so there is none. A read in progress is an entry in an insertion-ordered dict (so
also deadline-ordered), and one sweep a tick, scheduled only while some read is in progress,
interrupts the expired ones. Only the body is timed: once it is complete, an app waiting on
`receive()` for a disconnect (a streaming response) waits as long as it needs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("wqbot.http")

# Seconds a whole request body may take once the app starts reading it. Callback and API bodies
# are at most 64 KiB and 1 MiB; even a slow link sends them in well under this.
BODY_TIMEOUT = 10.0

_DISCONNECT = {"type": "http.disconnect"}


class BodyTimeout:
    """ASGI middleware: 408 (and connection: close) when a request body is not complete within
    `seconds` of the app's first `receive()` (give or take a tick, `seconds` / 10, at most 1 s).
    One event loop at a time, as under uvicorn."""

    def __init__(self, app: ASGIApp, seconds: float = BODY_TIMEOUT):
        self.app = app
        self.seconds = seconds
        self.tick = min(1.0, seconds / 10)
        self.reading: dict[_Request, None] = {}  # reads in progress, oldest first
        self._sweep: asyncio.TimerHandle | None = None
        text = f"request body not complete within {seconds:g} seconds: send the whole body without pauses"
        self.body = text.encode()
        self.start = {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(self.body)),
                (b"connection", b"close"),
            ],
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        r = _Request(self, scope, receive, send)
        try:
            await self.app(scope, r.receive, r.send)
        except Exception:
            if not r.answered:
                raise
            # The app met the disconnect it was given (Starlette raises ClientDisconnect).
        finally:
            self.reading.pop(r, None)

    def sweep(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for r in list(self.reading):
            if r.deadline is None or r.deadline > now:  # None: never, a read in progress has one
                break
            del self.reading[r]
            r.expire()
        if self.reading:
            self._sweep = loop.call_later(self.tick, self.sweep)

    def started_reading(self, r: _Request) -> None:
        self.reading[r] = None
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.tick, self.sweep)

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes… of the app behind
        return getattr(self.app, name)


class _Request:
    __slots__ = (
        "mw",
        "scope",
        "_receive",
        "_send",
        "deadline",
        "task",
        "waiting",
        "expired",
        "complete",
        "answered",
        "started",
    )

    def __init__(self, mw: BodyTimeout, scope: Scope, receive: Receive, send: Send):
        self.mw, self.scope, self._receive, self._send = mw, scope, receive, send
        self.deadline: float | None = None
        self.task: asyncio.Task[Any] | None = None
        self.waiting = self.expired = self.complete = self.answered = self.started = False

    def expire(self) -> None:
        self.expired = True
        if self.waiting and self.task is not None:  # interrupt the wait; between reads, the next read sees `expired`
            self.task.cancel()

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        if self.expired:
            return await self.answer()
        if self.deadline is None:
            self.task = asyncio.current_task()
            assert self.task is not None  # the app awaits receive() in a task
            self.deadline = self.task.get_loop().time() + self.mw.seconds
            self.mw.started_reading(self)
        self.waiting = True
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not self.expired:
                raise
            self.task.uncancel()
            return await self.answer()
        finally:
            self.waiting = False
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
            self.mw.reading.pop(self, None)
        return message

    async def answer(self) -> Message:
        if not self.answered:
            self.answered = True
            log.warning(
                "request body too slow: answered 408",
                extra={"path": self.scope.get("path"), "method": self.scope.get("method"), "seconds": self.mw.seconds},
            )
            if not self.started:
                await self._send(self.mw.start)
                await self._send({"type": "http.response.body", "body": self.mw.body})
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        if self.answered:  # the client was answered (408) and the connection is closing
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
