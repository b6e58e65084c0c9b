"""A time limit on a request's headers (slow-loris headers), for `wqbot serve`'s uvicorn.

uvicorn (httptools and h11 alike) arms no timer until a response is sent: a connection that
sends nothing, or one header byte a second, is held for as long as it likes, and enough of them
use up the process's file descriptors. nginx in front (docs/deploy.md) has client_header_timeout;
`wqbot serve` facing clients itself had nothing. This is uvicorn's httptools protocol with one
rule added: a request's headers must be complete `HEADER_TIMEOUT` seconds after its first byte
(or after the connection opened, for its first request); otherwise 408 and the connection is
closed. Idle keep-alive connections stay uvicorn's business (timeout_keep_alive).

Like bot.body_timeout, no timer per request (call_later + cancel measured ~2.5 µs): waiting
connections sit in an insertion-ordered (so deadline-ordered) dict that one sweep a tick walks."""
from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("wqbot.http")

HEADER_TIMEOUT = 10.0  # seconds from a request's first byte (or the connection's opening) to its last header

_waiting: dict[HeaderTimeoutProtocol, float] = {}  # connections whose headers are incomplete, oldest first
_sweep: tuple | None = None  # (loop, its pending sweep); one loop per process under uvicorn, tests start more


def _tick() -> float:
    return min(1.0, HEADER_TIMEOUT / 10)


def _sweep_now(loop) -> None:
    global _sweep
    _sweep = None
    now = loop.time()
    for conn, deadline in list(_waiting.items()):
        if conn.loop is not loop:
            continue
        if deadline > now:
            break
        del _waiting[conn]
        conn.headers_too_slow()
    if _waiting:
        _sweep = (loop, loop.call_later(_tick(), _sweep_now, loop))


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def _start_waiting(self) -> None:
        global _sweep
        if self not in _waiting:
            _waiting[self] = self.loop.time() + HEADER_TIMEOUT
            if _sweep is None or _sweep[0] is not self.loop:
                _sweep = (self.loop, self.loop.call_later(_tick(), _sweep_now, self.loop))

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_waiting()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_waiting()

    def on_headers_complete(self) -> None:
        _waiting.pop(self, None)
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        _waiting.pop(self, None)
        super().connection_lost(exc)

    def headers_too_slow(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request is still being answered (its pipelined successor's headers are the slow
            # ones): answer that first, and give the successor another period.
            self._start_waiting()
            return
        msg = f"request headers not complete within {HEADER_TIMEOUT:g} seconds"
        log.warning("request headers too slow: answered 408", extra={"seconds": HEADER_TIMEOUT})
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(msg), msg.encode()))
        self.transport.close()
