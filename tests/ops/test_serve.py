"""`wqbot serve` as a user runs it: a .env of the official test vector's values (tests/data), a real socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, TEST_ENV
from tests.support import wait_until_serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_the_official_url_verification_vector(tmp_path, vectors):
    a = next(s for s in vectors["sets"] if s["name"] == "official-A")
    get = next(c for c in a["cases"] if c["name"] == "A-GET")
    env_file = {
        "WECOM_CORP_ID": a["receive_id"],
        "WECOM_AGENT_ID": "218",
        "WECOM_APP_SECRET": "x-secret",
        "WECOM_TOKEN": a["token"],
        "WECOM_AES_KEY": a["encoding_aes_key"],
        "SECRET_KEY": "k" * 32,
        "WEIQIAN_API_TOKEN": "t" * 32,
    }
    if BACKEND == "pg":  # the scale-out setup: same command, PostgreSQL store, Redis queue
        env_file.update(DATABASE_URL=TEST_ENV["DATABASE_URL"], QUEUE_URL=TEST_ENV["QUEUE_URL"])
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_"))
    }
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = (
            f"http://127.0.0.1:{port}/wecom/callback?msg_signature={get['msg_signature']}"
            f"&timestamp={get['timestamp']}&nonce={get['nonce']}&echostr={get['echostr_in_url']}"
        )
        r = wait_until_serving(url, proc, tmp_path / "serve.log")
        assert r.status_code == 200 and r.text == get["expect_plaintext"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        if BACKEND == "sqlite":
            assert Path(tmp_path / "wqbot.db").exists() and Path(tmp_path / "wqbot-queue.db").exists()
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then wait for the graceful stop. The embedded consumer first finishes the task it
    is running, and in these tests a periodic sync may be retrying the unreachable test WeCom
    (backoff between attempts), so the stop can take longer than a request would."""
    proc.terminate()
    proc.wait(45)


# -- connections and open files ------------------------------------------------------------------------
def _serve_with_file_limit(tmp_path, soft: int, hard: int) -> tuple[subprocess.Popen, int, Path]:
    """`wqbot serve` on the test settings, one web process (the limits are per process), started
    with RLIMIT_NOFILE (soft, hard)."""
    import resource

    port = free_port()
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env={**os.environ, **TEST_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    log.close()
    wait_until_serving(f"http://127.0.0.1:{port}/healthz", proc, log_path)
    return proc, port, log_path


def _idle(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        out.append(s)
    return out


def test_serve_raises_its_file_limit_so_idle_connections_cannot_starve_healthz(tmp_path):
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard open-file limit here is {hard}: nothing to raise to")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 2048:  # this test's own 1,100 sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    proc, port, log_path = _serve_with_file_limit(tmp_path, 1024, hard)
    idle: list[socket.socket] = []
    try:
        assert "(raised from 1024)" in log_path.read_text() and "connections per process" in log_path.read_text()
        idle = _idle(port, 1100)  # more than the 1,024 files it started with
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.status_code == 200
    finally:
        for s in idle:
            s.close()
        stop(proc)


def test_serve_closes_connections_past_its_limit_at_once_and_keeps_serving(tmp_path):
    from bot.server.connections import limits_for

    proc, port, log_path = _serve_with_file_limit(tmp_path, 256, 256)  # cannot be raised
    limits = limits_for(256)
    idle: list[socket.socket] = []
    try:
        assert f"open-file limit 256; at most {limits.total} connections" in log_path.read_text()
        idle = _idle(port, limits.total + 40)
        for s in idle:
            s.settimeout(0.05)
        closed = 0
        for s in idle:
            try:
                closed += s.recv(1) == b""  # the server closed it
            except (TimeoutError, ConnectionResetError):
                closed += isinstance(sys.exc_info()[1], ConnectionResetError)
        assert closed >= 40
        for s in idle:
            s.close()
        idle = []
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.status_code == 200
        assert "Too many open files" not in log_path.read_text()
        assert "the connection limit is reached" in log_path.read_text()
    finally:
        for s in idle:
            s.close()
        stop(proc)


def test_one_client_holds_at_most_its_share_of_connections():
    from bot.server.connections import Admission, limits_for

    a = Admission(limits_for(1024))
    share = a.limits.per_client
    keys = [a.admit("203.0.113.9") for _ in range(share)]
    assert None not in keys and a.admit("203.0.113.9") is None
    assert a.admit("2001:db8::1") is not None and a.admit("127.0.0.1") is not None  # others still get in
    a.release(keys[0])
    assert a.admit("203.0.113.9") is not None
    loop = [a.admit("127.0.0.1") for _ in range(a.limits.total)]  # nginx's loopback: only the total applies
    assert loop.count(None) == share + 2 and a.total == a.limits.total
