"""docs/reliability.md §4 (hostile input): slow-loris clients get a time limit.

Bodies: bot.server.body_timeout.BodyTimeout (what `wqbot serve` serves, in front of CallbackFastPath)
answers 408 and closes the connection when a body is not complete BODY_TIMEOUT (10) seconds
after the app starts reading it. In-process with a short limit, then once at a real `wqbot
serve` with the real one, while other clients are served meanwhile.

Headers: uvicorn (0.54, httptools and h11 alike) arms no timer before a request's headers are
complete, so a client trickling its header lines (or sending nothing) was held as long as it
liked. `wqbot serve` runs bot.server.header_timeout.HeaderTimeoutProtocol (httptools with a limit):
408 and closed HEADER_TIMEOUT (10) seconds after the request's first byte, and 431 past
MAX_HEADER_BYTES (64 KiB: httptools has no size limit either). In-process on a uvicorn server
with a short limit, then at a real `wqbot serve`."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from bot.server.body_timeout import BODY_TIMEOUT, BodyTimeout
from bot.server.header_timeout import HEADER_TIMEOUT
from tests.reliability.hostile import AUTH, changes, snapshot, uvicorn_on_a_thread, wqbot_serve
from tests.support import app_crypto, click, signed

LIMIT = 0.5  # the in-process tests' limit, seconds


class Client:
    """One request driven by hand at the ASGI interface: its body as timed chunks, every
    message the app sends recorded with when it was sent."""

    def __init__(self, chunks, gap: float, then_wait: bool = True):
        self.chunks, self.gap, self.then_wait = list(chunks), gap, then_wait
        self.sent: list[tuple[float, dict]] = []
        self.reads = 0
        self.t0 = None

    async def receive(self):
        self.reads += 1
        if self.chunks:
            if self.reads > 1:
                await asyncio.sleep(self.gap)
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.then_wait}
        await asyncio.sleep(3600)  # a client that sends nothing more

    async def send(self, message):
        self.sent.append((time.monotonic() - self.t0, message))

    @property
    def status(self):
        return next((m["status"] for _, m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def answered_at(self):
        return next((t for t, m in self.sent if m["type"] == "http.response.start"), None)

    def header(self, name: bytes):
        start = next(m for _, m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"]).get(name)

    def text(self):
        return b"".join(m.get("body", b"") for _, m in self.sent if m["type"] == "http.response.body").decode()


def scope(method: str, path: str, query: str = "", headers=()):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def run(app, sc, client: Client, timeout: float = 10):
    client.t0 = time.monotonic()
    await asyncio.wait_for(app(sc, client.receive, client.send), timeout)
    return client


@pytest.fixture
def served(settings, store, queue):
    """What `wqbot serve` serves, with the in-process limit."""
    from bot.app import create_app
    from bot.callback import CallbackFastPath

    return BodyTimeout(CallbackFastPath(create_app(settings, init_store=False)), seconds=LIMIT)


def callback_request(settings):
    params, body = signed(app_crypto(settings), click("help"))
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return query, body.encode()


def test_a_trickled_callback_body_gets_408_after_the_limit(served, settings):
    query, body = callback_request(settings)
    before = snapshot()
    c = asyncio.run(
        run(
            served,
            scope("POST", "/wecom/callback", query, [("content-length", str(len(body)))]),
            Client([body[i : i + 1] for i in range(len(body))], gap=0.1),
        )
    )
    assert c.status == 408 and c.header(b"connection") == b"close"
    assert "not complete within 0.5 seconds" in c.text()
    assert LIMIT <= c.answered_at < LIMIT + 3  # the limit, a tick, and a generous margin for a busy machine
    assert len(c.sent) == 2  # the 408 and its body; nothing from the app after it
    reads = c.reads
    assert reads < len(body)  # it was cut off, not read to the end
    assert not changes(before, snapshot())


def test_headers_and_then_nothing_gets_408(served, settings):
    query, body = callback_request(settings)
    c = asyncio.run(
        run(served, scope("POST", "/wecom/callback", query, [("content-length", str(len(body)))]), Client([], gap=0))
    )
    assert c.status == 408 and c.reads == 1


def test_a_trickled_api_body_gets_408_and_the_app_stops_quietly(served):
    """The Starlette side: request.stream() raises ClientDisconnect on the disconnect it is
    handed; that must not escape as an error (uvicorn would log it and try a 500)."""
    body = b'{"id": "wq-evt-slow", "type": "notice", "task_id": "T-9", "title": "x", "recipients": ["lisi"]}'
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("authorization", AUTH["Authorization"]),
    ]
    before = snapshot()
    c = asyncio.run(
        run(served, scope("POST", "/api/v1/notifications", "", headers), Client([body[:10], body[10:20]], gap=0.2))
    )
    assert c.status == 408 and len(c.sent) == 2
    assert not changes(before, snapshot())


def test_a_body_slow_but_within_the_limit_is_served(settings, store, queue):
    from bot.app import create_app
    from bot.callback import CallbackFastPath
    from store.models import Delivery

    app = BodyTimeout(CallbackFastPath(create_app(settings, init_store=False)), seconds=2.0)
    query, body = callback_request(settings)
    third = len(body) // 3 + 1
    c = asyncio.run(
        run(
            app,
            scope("POST", "/wecom/callback", query, [("content-length", str(len(body)))]),
            Client([body[:third], body[third : 2 * third], body[2 * third :]], gap=0.2, then_wait=False),
        )
    )
    assert c.status == 200 and c.text().startswith("<xml>")
    assert Delivery.select().count() == 1


def test_after_the_body_waiting_for_a_disconnect_is_not_timed():
    """A streaming response listens on receive() for the client leaving: no limit on that."""
    got = []

    async def app(sc, receive, send):
        got.append(await receive())  # the whole body
        got.append(await receive())  # waits for the client to go
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    class Leaves(Client):
        async def receive(self):
            self.reads += 1
            if self.reads == 1:
                return {"type": "http.request", "body": b"x", "more_body": False}
            await asyncio.sleep(LIMIT * 3)
            return {"type": "http.disconnect"}

    c = asyncio.run(run(BodyTimeout(app, seconds=LIMIT), scope("POST", "/stream"), Leaves([], 0)))
    assert [m["type"] for m in got] == ["http.request", "http.disconnect"]
    assert c.status == 200 and c.text() == "done"


def test_slow_clients_do_not_hold_up_the_rest(settings, store, queue):
    """Ten slow bodies and forty normal callbacks at once on one loop: the normal ones are all
    answered (and applied) while the slow ones wait; the slow ones all get their 408."""
    from bot.app import create_app
    from bot.callback import CallbackFastPath
    from store.models import Delivery

    app = BodyTimeout(CallbackFastPath(create_app(settings, init_store=False)), seconds=3.0)

    async def main():
        slow, fast = [], []
        for _ in range(10):
            query, body = callback_request(settings)
            slow.append(
                run(
                    app,
                    scope("POST", "/wecom/callback", query, [("content-length", str(len(body)))]),
                    Client([body[:5], body[5:6], body[6:7]], gap=0.4),
                )
            )
        for i in range(40):
            params, body = signed(app_crypto(settings), click("help", CreateTime=i))
            query = "&".join(f"{k}={v}" for k, v in params.items())
            fast.append(run(app, scope("POST", "/wecom/callback", query), Client([body.encode()], 0, then_wait=False)))
        results = await asyncio.gather(*slow, *fast)
        return results[:10], results[10:]

    slow, fast = asyncio.run(main())
    assert [c.status for c in fast] == [200] * 40
    assert max(c.answered_at for c in fast) < min(c.answered_at for c in slow)
    assert [c.status for c in slow] == [408] * 10
    assert Delivery.select().count() == 40


# -- at a real `wqbot serve` ------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path, store):
    with wqbot_serve(tmp_path) as running:
        yield running


class Trickle(threading.Thread):
    """A raw socket that sends `head` and then `tail` a byte every `gap` seconds, recording when
    the server answered and when it closed the connection."""

    def __init__(self, port: int, head: bytes, tail: bytes, gap: float = 1.0):
        super().__init__(daemon=True)
        self.port, self.head, self.tail, self.gap = port, head, tail, gap
        self.answer = b""
        self.sent_bytes = 0
        self.answered_at = self.closed_at = None
        self.t0 = None

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(self.gap)
        self.t0 = time.monotonic()
        s.sendall(self.head)
        try:
            for b in self.tail:
                try:
                    data = s.recv(4096)
                except TimeoutError:
                    s.sendall(bytes((b,)))
                    self.sent_bytes += 1
                    continue
                self._got(data)
                if not data:
                    return
            s.settimeout(30)
            while data := s.recv(4096):
                self._got(data)
            self._got(b"")
        except (ConnectionError, OSError):
            self._got(b"")
        finally:
            s.close()

    def _got(self, data: bytes):
        now = time.monotonic() - self.t0
        if data and self.answered_at is None:
            self.answered_at = now
        if not data and self.closed_at is None:
            self.closed_at = now
        self.answer += data


def _keep_serving(port: int, settings, until) -> tuple[int, int]:
    """Health checks and signed callbacks to `port` until `until()`; (sent, answered 200)."""
    crypto = app_crypto(settings)
    sent = ok = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        while not until():
            params, body = signed(crypto, click("help", CreateTime=sent))
            for r in (http.get("/healthz"), http.post("/wecom/callback", params=params, content=body)):
                sent += 1
                ok += r.status_code == 200
            time.sleep(0.25)
    return sent, ok


def test_serve_cuts_off_a_trickled_body_and_serves_everyone_else(server, settings):
    port, log_path = server
    params, body = signed(app_crypto(settings), click("help"))
    query = "&".join(f"{k}={v}" for k, v in params.items())
    head = (
        f"POST /wecom/callback?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    slow = Trickle(port, head, body.encode(), gap=1.0)
    slow.start()
    sent, ok = _keep_serving(port, settings, until=lambda: not slow.is_alive() or time.monotonic() - slow.t0 > 40)
    slow.join(5)
    print(
        f"trickled body: 408 after {slow.answered_at:.1f} s, closed after {slow.closed_at:.1f} s, "
        f"{slow.sent_bytes} of {len(body)} bytes sent; meanwhile {ok}/{sent} other requests answered 200"
    )
    assert slow.answer.startswith(b"HTTP/1.1 408"), (slow.answer[:200], open(log_path).read()[-1500:])
    assert b"connection: close" in slow.answer.lower() and b"not complete within 10 seconds" in slow.answer
    # Cut off at BODY_TIMEOUT (10 s) after the headers, give or take the 1 s sweep tick, with a
    # margin for a busy machine; it had sent ~10 of its bytes by then.
    assert BODY_TIMEOUT - 0.5 <= slow.answered_at <= BODY_TIMEOUT + 6, slow.answered_at
    assert slow.closed_at is not None and slow.closed_at - slow.answered_at < 3
    assert slow.sent_bytes < len(body)
    assert sent >= 20 and ok == sent  # everyone else was served meanwhile


def test_serve_cuts_off_trickled_headers_and_serves_everyone_else(server, settings):
    port, log_path = server
    slow = Trickle(port, b"POST /wecom/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: " + b"a" * 60, gap=1.0)
    slow.start()
    sent, ok = _keep_serving(port, settings, until=lambda: not slow.is_alive() or time.monotonic() - slow.t0 > 40)
    slow.join(5)
    print(
        f"trickled headers: 408 after {slow.answered_at:.1f} s, {slow.sent_bytes} header bytes sent; "
        f"meanwhile {ok}/{sent} other requests answered 200"
    )
    assert slow.answer.startswith(b"HTTP/1.1 408"), (slow.answer[:200], open(log_path).read()[-1500:])
    assert b"not complete within 10 seconds" in slow.answer
    assert HEADER_TIMEOUT - 0.5 <= slow.answered_at <= HEADER_TIMEOUT + 6, slow.answered_at
    assert slow.closed_at is not None and slow.closed_at - slow.answered_at < 3
    assert sent >= 20 and ok == sent


# -- the header limit, in-process on uvicorn ----------------------------------------------------------
@pytest.fixture
def short_header_limit(monkeypatch):
    from bot.server import header_timeout

    monkeypatch.setattr(header_timeout, "HEADER_TIMEOUT", LIMIT)
    return LIMIT


@pytest.fixture
def uvicorn_port(short_header_limit):
    """A uvicorn server (httptools with the header limit) on a thread, answering "ok"."""

    async def app(sc, receive, send):
        if sc["type"] != "http":
            return
        while (await receive()).get("more_body"):  # the whole body, as an endpoint reads it
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with uvicorn_on_a_thread(app, loop="asyncio", log_level="warning") as port:
        yield port


def test_trickled_headers_get_408_after_the_limit(uvicorn_port):
    slow = Trickle(uvicorn_port, b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 40, gap=0.1)
    slow.run()
    assert slow.answer.startswith(b"HTTP/1.1 408") and b"connection: close" in slow.answer
    assert LIMIT <= slow.answered_at < LIMIT + 3 and slow.closed_at is not None
    assert slow.sent_bytes < 40


def test_a_connection_that_sends_nothing_is_closed_quietly(uvicorn_port):
    """As an idle keep-alive connection is: no unasked-for 408 a client could take for the
    answer to the request it is just sending."""
    with socket.create_connection(("127.0.0.1", uvicorn_port)) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        data = s.recv(4096)
        waited = time.monotonic() - t0
    assert data == b"" and LIMIT <= waited < LIMIT + 3


def test_each_request_on_a_kept_alive_connection_gets_its_own_period(uvicorn_port):
    """Requests whose headers arrive at once are never cut off, however long the connection
    lives; the limit is per request. Then a trickled one on the same connection is."""
    with socket.create_connection(("127.0.0.1", uvicorn_port)) as s:
        s.settimeout(5)
        t0 = time.monotonic()
        answers = []
        while time.monotonic() - t0 < LIMIT * 3:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"ok"):
                data += s.recv(4096)
            answers.append(data[:12])
            time.sleep(LIMIT / 4)
        assert len(answers) >= 3 and set(answers) == {b"HTTP/1.1 200"}
        s.sendall(b"GET / HTTP/1.1\r\n")
        t1 = time.monotonic()
        data = b""
        while True:
            try:
                s.sendall(b"X")
            except OSError:
                break
            try:
                more = s.recv(4096)
            except TimeoutError:
                continue
            if not more:
                break
            data += more
            time.sleep(0.1)
        assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - t1 < LIMIT + 3


def _one_request(port: int, request: bytes) -> tuple[bytes, float]:
    """Send `request`; the whole answer (until the server closes or 5 s pass) and how long it took."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        t0 = time.monotonic()
        try:
            s.sendall(request)
        except OSError:  # the server closed while we were still sending: read its answer
            pass
        data = b""
        try:
            while more := s.recv(65536):
                data += more
                if data.endswith(b"ok"):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return data, time.monotonic() - t0


def test_headers_larger_than_the_limit_get_431(uvicorn_port):
    from bot.server.header_timeout import MAX_HEADER_BYTES

    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * MAX_HEADER_BYTES) + b"\r\n\r\n"
    data, took = _one_request(uvicorn_port, big)
    assert data.startswith(b"HTTP/1.1 431") and b"larger than 65536 bytes" in data and took < 3
    long_url = b"GET /" + b"a" * (2 * MAX_HEADER_BYTES) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _one_request(uvicorn_port, long_url)[0].startswith(b"HTTP/1.1 431")


def test_headers_within_the_limit_and_large_bodies_are_served(uvicorn_port):
    """The limit counts the request line and headers only: a 1 MiB body sent in the same write
    is the body's business."""
    from bot.server.header_timeout import MAX_HEADER_BYTES

    near = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES - 200) + b"\r\n\r\n"
    assert _one_request(uvicorn_port, near)[0].startswith(b"HTTP/1.1 200")
    body = b"x" * (1024 * 1024)
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    assert _one_request(uvicorn_port, post)[0].startswith(b"HTTP/1.1 200")
    chunks = [post[i : i + 100_000] for i in range(0, len(post), 100_000)]
    with socket.create_connection(("127.0.0.1", uvicorn_port)) as s:
        s.settimeout(5)
        for c in chunks:
            s.sendall(c)
        data = b""
        while not data.endswith(b"ok"):
            data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 200")
    # Pipelined: a small request, then the large one, in one write.
    with socket.create_connection(("127.0.0.1", uvicorn_port)) as s:
        s.settimeout(5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + post)
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            more = s.recv(4096)
            assert more, data
            data += more


def test_serve_refuses_huge_headers_and_keeps_serving(server, settings):
    port, _ = server
    data, took = _one_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 431") and took < 5
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
