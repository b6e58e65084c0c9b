"""`wqbot serve` as a user runs it: a .env of the official test vector's values (tests/data), a real socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

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
        proc.terminate()
        proc.wait(10)
        log.close()
