"""A time limit, and a size limit, on a request's headers (slow-loris headers), for `wqbot serve`'s
uvicorn.

uvicorn (httptools and h11 alike) arms no timer until a response is sent: a connection that
sends nothing, or one header byte a second, is held for as long as it likes, and enough of them
use up the process's file descriptors. nginx in front (docs/deploy.md) has client_header_timeout;
`wqbot serve` facing clients itself had nothing. This is uvicorn's httptools protocol with two
rules added: a request's headers must be complete `HEADER_TIMEOUT` seconds after its first byte
(or after the connection opened, for its first request), else 408 (or, if nothing at all came,
the connection is just closed); and they must fit in
`MAX_HEADER_BYTES`, else 431. Either way the connection is closed. Idle keep-alive connections
stay uvicorn's business (timeout_keep_alive).

Like body_timeout.py, no timer per request (too dear for every request: bench/README.md): waiting
connections sit in an insertion-ordered (so deadline-ordered) dict that one sweep a tick walks."""

from __future__ import annotations

import asyncio
import logging

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.observability.logs import LogThrottle

from .connections import admission
from .one_write import OneWriteTransport

log = logging.getLogger("wqbot.http")
# A flood of refused connections logs one line a minute, not one per connection.
_refused_log = LogThrottle(interval=60.0)

HEADER_TIMEOUT = 10.0  # seconds from a request's first byte (or the connection's opening) to its last header
# Bytes of request line and headers. httptools has no limit and builds a long header by repeated
# concatenation, so one huge header costs a process memory and CPU within the time limit
# (bench/README.md). nginx allows 4 × 8 KiB by default; WeCom and 微签 send under 2 KiB.
MAX_HEADER_BYTES = 64 * 1024

_waiting: dict[HeaderTimeoutProtocol, float] = {}  # connections whose headers are incomplete, oldest first
# (loop, its pending sweep); one loop per process under uvicorn, tests start more
_sweep: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None


def _tick() -> float:
    return min(1.0, HEADER_TIMEOUT / 10)


def _sweep_now(loop: asyncio.AbstractEventLoop) -> None:
    global _sweep
    _sweep = None
    now = loop.time()
    for conn, deadline in list(_waiting.items()):
        if conn.loop is not loop:
            continue
        if deadline > now:
            break
        del _waiting[conn]
        conn.waiting = False
        conn.headers_too_slow()
    if _waiting:
        _sweep = (loop, loop.call_later(_tick(), _sweep_now, loop))


class HeaderTimeoutProtocol(HttpToolsProtocol):
    # This runs for every request, so it must add next to nothing to httptools' own cost
    # (bench/README.md). Hence base methods called by name rather than through super(), and
    # membership of `_waiting` mirrored in `waiting`.
    waiting = False  # in `_waiting`: this request's headers are incomplete
    header_bytes = 0  # received while they are incomplete (about: see data_received)
    headers_parsed = 0  # requests on this connection whose headers were complete

    def _start_waiting(self) -> None:
        global _sweep
        if not self.waiting:
            self.waiting = True
            loop = self.loop
            _waiting[self] = loop.time() + HEADER_TIMEOUT
            if _sweep is None or _sweep[0] is not loop:
                _sweep = (loop, loop.call_later(_tick(), _sweep_now, loop))

    def _stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            _waiting.pop(self, None)

    admitted: str | None = None  # the admission key this connection holds (None: refused)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        peer = transport.get_extra_info("peername")
        self.admitted = admission().admit(str(peer[0]) if peer else "")
        if self.admitted is None:
            # Past the connection limit: close now, so the descriptor comes straight back.
            ok, suppressed = _refused_log.allow("refused")
            if ok:
                log.warning("connections refused: the connection limit is reached", extra={"also_refused": suppressed})
            transport.abort()
            return
        HttpToolsProtocol.connection_made(self, transport)
        self._start_waiting()

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._start_waiting()

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        self.header_bytes = 0
        self.headers_parsed += 1
        previous = self.cycle
        HttpToolsProtocol.on_headers_complete(self)
        cycle = self.cycle
        if cycle is not None and cycle is not previous:  # a new request: its answer in one write
            transport = OneWriteTransport(self.transport, cycle)
            cycle.transport = transport  # type: ignore[assignment]
            completed = cycle.on_response

            def on_response() -> None:  # this cycle's, even when a pipelined one is current
                transport.flush()  # a HEAD answer has no body write to carry its head
                completed()

            cycle.on_response = on_response

    def data_received(self, data: bytes) -> None:
        if self.waiting:
            room = MAX_HEADER_BYTES - self.header_bytes
            if len(data) > room:
                # Feed what fits: if the headers end within it, the rest is body (or the next
                # request) and goes on as usual; if not, they are too large.
                parsed = self.headers_parsed
                if room > 0:
                    self._feed(data[:room])
                    data = data[room:]
                if self.transport.is_closing():
                    return
                if self.headers_parsed == parsed:
                    self._stop_waiting()
                    self._refuse(
                        431,
                        "Request Header Fields Too Large",
                        f"request line and headers larger than {MAX_HEADER_BYTES} bytes",
                    )
                    return
            else:
                self.header_bytes += len(data)
        self._feed(data)
        if self.waiting and not self.header_bytes:
            self.header_bytes = 1  # a request began in this chunk (its share of it is not counted)

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, but an Upgrade it does not serve (`Upgrade: h2c`, say) is
        ignored, as HTTP/1.1 lets a server do: the request is served with its body.

        httptools stops at the end of such a request's headers and reports it complete with no
        body (uvicorn then logs a warning and the body is lost: a callback's envelope, say). Here
        a fresh parser takes the rest: it is first fed a made-up head with the request's own
        framing (Content-Length or chunked), which `_AfterUpgrade` keeps from the protocol, so
        what follows is read as the body of the request being served, then as the requests after it."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade as e:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            elif e.args and isinstance(e.args[0], int) and self.cycle is not None:
                self._ignore_upgrade(data[e.args[0] :])
            else:
                self._unsupported_upgrade_warning()

    def _ignore_upgrade(self, rest: bytes) -> None:
        framing = b""
        for name, value in self.headers:
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                framing = b"transfer-encoding: chunked"
            elif name == b"content-length" and not framing and value.strip() not in (b"", b"0"):
                framing = b"content-length: " + value.strip()
        callbacks = _AfterUpgrade(self)
        self.parser = httptools.HttpRequestParser(callbacks)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if framing:  # the request is not complete after all: its body follows
            self.cycle.more_body = True
            self.cycle.message_event.clear()
            self.parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n")
        callbacks.in_head = False
        if rest:
            self._feed(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted is None:
            return  # refused in connection_made: uvicorn never saw it
        admission().release(self.admitted)
        self.admitted = None
        self._stop_waiting()
        HttpToolsProtocol.connection_lost(self, exc)

    def headers_too_slow(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request is still being answered (its pipelined successor's headers are the slow
            # ones): answer that first, and give the successor another period.
            self._start_waiting()
            return
        if not self.header_bytes:
            # Nothing sent at all (a browser's preconnect, say): close quietly, as for an idle
            # keep-alive connection; an unasked-for 408 could be read as the answer to a request
            # the client is just sending.
            self.transport.close()
            return
        self._refuse(408, "Request Timeout", f"request headers not complete within {HEADER_TIMEOUT:g} seconds")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        log.warning("request refused before its headers were complete", extra={"status": status, "reason": message})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(message), message.encode())
        )
        self.transport.close()


class _AfterUpgrade:
    """The parser callbacks of a connection whose Upgrade was ignored: the made-up head that
    resumes the body (`in_head`) goes nowhere, everything after it to the protocol."""

    def __init__(self, protocol: HeaderTimeoutProtocol):
        self.protocol = protocol
        self.in_head = True

    def on_message_begin(self) -> None:
        if not self.in_head:
            self.protocol.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.in_head:
            self.protocol.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            self.protocol.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.in_head:
            self.protocol.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.protocol.on_body(body)

    def on_message_complete(self) -> None:
        self.protocol.on_message_complete()
