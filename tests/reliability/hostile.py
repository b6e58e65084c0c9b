"""What the hostile-input tests (docs/reliability.md §4) share: the whole store and queue as one comparable
snapshot, a seeded store for them to aim at, WeCom faked at its HTTP edge, and the sizes.

"No state change" is measured on content, not counts: every row of every table (the migration
ledger aside) goes into a digest, so an UPDATE (a state marked used, a ticket redeemed) shows as
well as an INSERT or a DELETE. The huey queue's pending and scheduled counts are part of it."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import respx
from httpx import Response

from tests.conftest import BACKEND, TEST_ENV
from tests.support import CORP, CallbackClient, click, wait_until_serving

SCALE = os.environ.get("WQBOT_RELIABILITY_SCALE", "short")
API = TEST_ENV["WECOM_API_BASE"]
PUBLIC = TEST_ENV["PUBLIC_URL"]
TOKEN = TEST_ENV["WEIQIAN_API_TOKEN"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USERS = ("lisi", "wangwu", "zhangsan")


def examples(short: int, long: int) -> int:
    """hypothesis max_examples for this run's scale (WQBOT_RELIABILITY_SCALE)."""
    return long if SCALE == "long" else short


def models() -> list:
    from store.models import Model, SchemaMigration

    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    # ops_error is the console's 最近错误: a refused callback is meant to reach it (once a minute per
    # check, bot/callback/refusal.py), so it is a diagnostic, not state a hostile request changed.
    kept = {m for m in walk(Model) if m is not SchemaMigration and m._meta.table_name != "ops_error"}
    return sorted(kept, key=lambda m: m._meta.table_name)


def table_digests() -> dict[str, tuple[int, str]]:
    """table name -> (rows, digest of every row's content, order-independent)."""
    from store import db

    out = {}
    for m in models():
        query = f'SELECT * FROM "{m._meta.table_name}"'
        if m._meta.table_name == "ops_error":
            # a validly signed callback that fails decryption is recorded for the console's 最近错误
            # by design (bot/callback/refusal.py: at most one row per endpoint and check, once a
            # minute); anything else written there is still a change
            query += " WHERE substr(source, 1, 9) <> 'callback.'"  # (no %: psycopg2 reads it as a placeholder)
        rows = sorted(repr(r) for r in db.obj.execute_sql(query).fetchall())
        out[m._meta.table_name] = (len(rows), hashlib.sha1("\n".join(rows).encode()).hexdigest())
    return out


def snapshot() -> dict:
    from bot.queue import huey

    return {"tables": table_digests(), "queue": (huey.pending_count(), huey.scheduled_count())}


# The console's 最近错误: a refused callback is recorded there for the operator, with its fix (one
# row per endpoint and check, throttled). That is the refusal being reported, not data changed.
OPERATOR_RECORDS = {"ops_error"}


def changes(before: dict, after: dict) -> dict:
    """What differs: {table or "queue": (before, after)}, beside the operator's error records."""
    out = {
        t: (v, after["tables"].get(t))
        for t, v in before["tables"].items()
        if after["tables"].get(t) != v and t not in OPERATOR_RECORDS
    }
    if before["queue"] != after["queue"]:
        out["queue"] = (before["queue"], after["queue"])
    return out


def fake_wecom(mock: respx.MockRouter) -> respx.MockRouter:
    """WeCom as far as the login and JS-SDK routes reach it: tokens and tickets are issued, the
    app's 可信域名 is PUBLIC_URL's host, and every login code is refused (40029), since a hostile
    request has no code WeCom issued. Anything else answers a WeCom error, never a transport
    failure."""
    ok = {"errcode": 0, "errmsg": "ok"}
    mock.get(API + "/cgi-bin/gettoken").mock(
        return_value=Response(200, json={**ok, "access_token": "ACCESS_TOKEN_FOR_TESTS", "expires_in": 7200})
    )
    mock.get(API + "/cgi-bin/agent/get").mock(
        return_value=Response(
            200, json={**ok, "agentid": 1000002, "name": "微签", "redirect_domain": PUBLIC.split("://", 1)[1]}
        )
    )
    mock.get(API + "/cgi-bin/get_jsapi_ticket").mock(
        return_value=Response(200, json={**ok, "ticket": "corp-jsapi-ticket", "expires_in": 7200})
    )
    mock.get(API + "/cgi-bin/ticket/get").mock(
        return_value=Response(200, json={**ok, "ticket": "agent-config-ticket", "expires_in": 7200})
    )
    mock.route(host=API.split("://", 1)[1], path__regex=r"/cgi-bin/(auth/getuserinfo|user/getuserinfo)").mock(
        return_value=Response(200, json={"errcode": 40029, "errmsg": "invalid code"})
    )
    mock.route(host=API.split("://", 1)[1]).mock(
        return_value=Response(200, json={"errcode": 60011, "errmsg": "no privilege to access/modify contact"})
    )
    return mock


def seed(client: CallbackClient) -> None:
    """Rows for hostile requests to aim at: a directory, a notification with its cards queued,
    a delivered callback, login states and an unredeemed ticket."""
    from settings import get_settings
    from store import login as login_store
    from store.directory import Department, User, UserDepartment

    s = get_settings()
    Department.create(id=1, name="总部", parent_id=0)
    for uid in USERS:
        User.create(userid=uid, name=uid, main_department=1, account=uid + "@example.com")
        UserDepartment.create(userid=uid, department_id=1)
    r = client.post(
        "/api/v1/notifications",
        headers=AUTH,
        json={
            "id": "wq-evt-hostile-1",
            "type": "approve",
            "task_id": "T-1",
            "title": "采购合同",
            "recipients": list(USERS),
            "url": "/pages/task/task_detail?id=T-1",
        },
    )
    assert r.status_code == 202, r.text
    assert client.callback(click("help")).status == 200
    login_store.create_state(s.secret_key, "h5", "/pages/index", "b" * 32)
    # A login started for real also caches the access token (key_value): a cache filled by a
    # later request is the only write a start may add besides its state row.
    assert client.get("/oauth/h5", follow_redirects=False).status_code == 302
    login_store.issue_ticket(s.secret_key, "lisi", "h5")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def uvicorn_on_a_thread(app, **config: Any) -> Iterator[int]:
    """`app` served by uvicorn with `wqbot serve`'s HTTP protocol (httptools with the header limit
    and one write per answer) on a free loopback port, on a thread. Yields the port."""
    import uvicorn

    from bot.server.header_timeout import HeaderTimeoutProtocol

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, http=HeaderTimeoutProtocol, lifespan="off", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def wqbot_serve(directory):
    """`wqbot serve --no-worker` on a free loopback port, run from `directory` with a .env of the
    test settings (the test's PostgreSQL and Redis with WQBOT_TEST_BACKEND=pg, else its own
    SQLite files there). Yields (port, log path)."""
    keys = (
        "WECOM_CORP_ID",
        "WECOM_AGENT_ID",
        "WECOM_APP_SECRET",
        "WECOM_TOKEN",
        "WECOM_AES_KEY",
        "SECRET_KEY",
        "WEIQIAN_API_TOKEN",
        "WECOM_API_BASE",
        "WECOM_CONTACTS_TOKEN",
        "WECOM_CONTACTS_AES_KEY",
    )
    env_file = {k: TEST_ENV[k] for k in keys}
    if BACKEND == "pg":
        env_file.update(DATABASE_URL=TEST_ENV["DATABASE_URL"], QUEUE_URL=TEST_ENV["QUEUE_URL"])
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "DATABASE_", "QUEUE_", "SECRET_", "WEIQIAN_"))
    }
    log_path = directory / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--port", str(port), "--workers", "1", "--no-worker"],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_serving(f"http://127.0.0.1:{port}/healthz", proc, log_path)
            yield port, log_path
        finally:
            proc.terminate()
            proc.wait(10)


__all__ = [
    "AUTH",
    "CORP",
    "PUBLIC",
    "SCALE",
    "USERS",
    "changes",
    "examples",
    "fake_wecom",
    "seed",
    "snapshot",
    "wqbot_serve",
]
