"""`wqbot serve` as a user runs it: a .env of the PROTOCOL.md test values, a real socket."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import BACKEND, TEST_ENV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_the_official_url_verification_vector(tmp_path, vectors):
    a = next(s for s in vectors["sets"] if s["name"] == "official-A")
    get = next(c for c in a["cases"] if c["name"] == "A-GET")
    env_file = {
        "WECOM_CORP_ID": a["receive_id"], "WECOM_AGENT_ID": "218", "WECOM_APP_SECRET": "x-secret",
        "WECOM_TOKEN": a["token"], "WECOM_AES_KEY": a["encoding_aes_key"], "SECRET_KEY": "k" * 32,
        "WEIQIAN_API_TOKEN": "t" * 32,
    }
    if BACKEND == "pg":  # the scale-out setup: same command, PostgreSQL store, Redis queue
        env_file.update(DATABASE_URL=TEST_ENV["DATABASE_URL"], QUEUE_URL=TEST_ENV["QUEUE_URL"])
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_"))}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/wecom/callback?msg_signature={get['msg_signature']}" \
              f"&timestamp={get['timestamp']}&nonce={get['nonce']}&echostr={get['echostr_in_url']}"
        deadline = time.time() + 20
        while True:
            try:
                r = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError("serve did not start: " + (proc.stdout.read() if proc.poll() is not None else ""))
                time.sleep(0.1)
        assert r.status_code == 200 and r.text == get["expect_plaintext"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        if BACKEND == "sqlite":
            assert Path(tmp_path / "wqbot.db").exists() and Path(tmp_path / "wqbot-queue.db").exists()
    finally:
        proc.terminate()
        proc.wait(10)
