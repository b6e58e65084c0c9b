"""A response's head and its first body bytes leave in one write.

uvicorn's httptools protocol writes a response's status line and headers in one
`transport.write` and its body in another: two system calls and two TCP segments per answer,
where a callback's whole answer fits in one. `OneWriteTransport` stands between one response
cycle and the connection: it holds the head back until the cycle's next write and sends both
together. Whatever else the cycle writes (a `100 Continue` before the response, further body
chunks) goes straight through, and a held head is sent before the connection closes and when the
response completes without a body write (a HEAD request).

The second write cost a no-op app ~5–6 µs of server CPU per request (bench/README.md)."""

from __future__ import annotations

import asyncio
from typing import Any


class OneWriteTransport:
    __slots__ = ("_transport", "_cycle", "_head", "_passing")

    def __init__(self, transport: asyncio.Transport, cycle: Any):
        self._transport = transport
        self._cycle = cycle  # uvicorn's RequestResponseCycle: `response_started` says a head is due
        self._head: bytes | None = None
        self._passing = False  # the head went out: every write goes straight through

    def write(self, data: bytes) -> None:
        if self._passing:
            self._transport.write(data)
        elif self._head is not None:
            head, self._head, self._passing = self._head, None, True
            self._transport.write(head + data)
        elif self._cycle.response_started:
            self._head = bytes(data)  # the status line and headers: wait for the body
        else:
            self._transport.write(data)  # before the response (100 Continue)

    def flush(self) -> None:
        """Send a held head now (the response ended without a body write, or the connection closes)."""
        if self._head is not None:
            head, self._head, self._passing = self._head, None, True
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, …
        return getattr(self._transport, name)
