"""`wqbot serve`'s HTTP protocol sends a response's head and body in one write, and loses nothing
on the way: HEAD answers, 100 Continue, streamed bodies, pipelined requests, an app that fails
after starting its answer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.reliability.hostile import uvicorn_on_a_thread


class CountingTransport:
    """Stands for the connection: records each write."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Cycle:
    response_started = False


def test_head_and_body_leave_in_one_write_and_later_chunks_go_straight_through():
    from bot.server.one_write import OneWriteTransport

    conn, cycle = CountingTransport(), Cycle()
    t = OneWriteTransport(conn, cycle)  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response: not held
    assert conn.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.response_started = True
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert len(conn.writes) == 1  # held
    t.write(b"body")
    t.write(b"more")
    assert conn.writes[1:] == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
    assert not t.is_closing()  # the rest is the connection's


def test_a_held_head_goes_out_on_flush_and_before_close():
    from bot.server.one_write import OneWriteTransport

    conn, cycle = CountingTransport(), Cycle()
    t = OneWriteTransport(conn, cycle)  # type: ignore[arg-type]
    cycle.response_started = True
    t.write(b"HEAD-ANSWER")
    t.close()
    assert conn.writes == [b"HEAD-ANSWER"] and conn.closed
    t.flush()
    assert conn.writes == [b"HEAD-ANSWER"]  # once


@pytest.fixture
def port():
    async def app(sc, receive, send):
        if sc["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        path = sc["path"]
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one,", b"two,", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/fail":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            raise RuntimeError("the app failed after starting its answer")
        body = b"answer to " + path.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    with uvicorn_on_a_thread(app, log_level="critical") as port:
        yield port


def exchange(port: int, raw: bytes, until: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(timeout)
        s.sendall(raw)
        data = b""
        while until not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_pipelined_requests_and_a_head_request_are_all_answered(port):
    raw = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n"
    data = exchange(port, raw, b"answer to /c")
    assert data.count(b"HTTP/1.1 200") == 3
    assert b"answer to /a" not in data and data.index(b"answer to /b") < data.index(b"answer to /c")


def test_expect_100_continue_gets_its_interim_answer_before_the_body_is_sent(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"body")
        data = b""
        while b"answer to /x" not in data:
            data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 200")


def test_a_streamed_body_arrives_whole_and_a_failed_answer_closes_the_connection(port):
    data = exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in data
    assert b"one," in data and b"two," in data and b"three" in data
    failed = exchange(port, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n", b"never")
    assert failed.startswith(b"HTTP/1.1 200")  # the head that was started, then the close
