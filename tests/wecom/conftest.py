"""Fixtures for the WeCom API client: a respx fake of WeCom's HTTP edge, a tiny real HTTP server
for cross-process tests, the shared token backends of this test backend, a recording sleep."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from tests.conftest import DATABASE_URL, REDIS_URL

BASE = "http://wecom.test"


class FakeWeCom:
    """WeCom's token endpoint and a token check, on respx. `token` is what gettoken hands out;
    an API route answers 42001 to any other token."""

    def __init__(self, router: respx.Router, token: str = "TOKEN-1", gettoken_delay: float = 0.0):
        self.router, self.token, self.gettoken_delay = router, token, gettoken_delay
        self.gettoken_calls = 0
        self.lock = threading.Lock()
        self.gettoken = router.get(f"{BASE}/cgi-bin/gettoken").mock(side_effect=self._gettoken)

    def _gettoken(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.gettoken_calls += 1
        if self.gettoken_delay:
            time.sleep(self.gettoken_delay)
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "access_token": self.token, "expires_in": 7200})

    def api(self, method: str, path: str, answer: dict | None = None):
        """A route that checks the token and answers `answer` (errcode 0 added)."""

        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.params.get("access_token") != self.token:
                return httpx.Response(200, json={"errcode": 42001, "errmsg": "access_token expired"})
            return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", **(answer or {})})

        return self.router.route(method=method, url=f"{BASE}{path}").mock(side_effect=handle)


@pytest.fixture
def wecom():
    with respx.mock(assert_all_called=False) as router:
        yield FakeWeCom(router)


class Sleeps(list):
    """A `sleep` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def make_client(settings, sleeps):
    from bot.wecom import WeComClient

    made = []

    def make(**kw):
        kw.setdefault("sleep", sleeps)
        c = WeComClient(settings, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.http.close()


# -- real shared backends --------------------------------------------------------------------------
def redis_or_skip():
    import redis

    r = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return r


@pytest.fixture
def namespace():
    """A Redis namespace of this test alone; its keys are deleted afterwards."""
    import secrets

    ns = f"wqbot-test-wecom-{secrets.token_hex(4)}"
    yield ns
    try:
        r = redis_or_skip()
        keys = list(r.scan_iter(match=f"{ns}:*"))
        if keys:
            r.delete(*keys)
    except Exception:
        pass


def _shared_kinds():
    # The store of this test backend (SQLite or PostgreSQL), and Redis (the pg backend's queue;
    # it runs on every developer machine, so the sqlite run checks it too).
    return ["store", "redis"]


@pytest.fixture(params=_shared_kinds())
def shared_backend(request, store, namespace):
    from bot.wecom._tokens import RedisBackend, SQLBackend

    if request.param == "redis":
        return RedisBackend(redis_or_skip(), namespace)
    return SQLBackend(DATABASE_URL)


# -- a tiny real WeCom for other processes ------------------------------------------------------------
class CountingWeCom(ThreadingHTTPServer):
    """gettoken (slow on purpose, counted) and agent/get (checks the token) on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, gettoken_delay: float = 0.3):
        self.gettoken_calls = 0
        self.api_calls = 0
        self.token = "TOKEN-REAL-1"
        self.gettoken_delay = gettoken_delay
        self.lock = threading.Lock()
        self.answers: dict[str, dict] = {}
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        srv: CountingWeCom = self.server
        if self.command == "POST":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path in srv.answers:
            answer = dict(srv.answers[url.path])
            return self._answer(answer, answer.pop("_status", 200))
        if url.path == "/cgi-bin/gettoken":
            with srv.lock:
                srv.gettoken_calls += 1
            time.sleep(srv.gettoken_delay)
            return self._answer({"errcode": 0, "errmsg": "ok", "access_token": srv.token, "expires_in": 7200})
        with srv.lock:
            srv.api_calls += 1
        if q.get("access_token") != srv.token:
            return self._answer({"errcode": 42001, "errmsg": "access_token expired"})
        return self._answer({"errcode": 0, "errmsg": "ok", "agentid": 1000002, "name": "微签"})

    do_POST = do_GET


@pytest.fixture
def counting_wecom():
    srv = CountingWeCom()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
