"""/metrics: the hooks feed it, the exposition parses, several processes add up (multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from prometheus_client.parser import text_string_to_metric_families

from bot.observability import metrics
from tests.support import message


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_callbacks_are_counted_by_kind_and_outcome(client, settings):
    before = client.get("/metrics").text
    params, body = client.sign(message(MsgType="text", Content="帮助", MsgId=99, AgentID=1000002))
    assert client.post_signed(params, body).status_code == 200
    assert client.post_signed({**params, "msg_signature": "0" * 40}, body).status_code == 403
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text
    assert (
        value(after, "wqbot_callbacks_total", endpoint="app", kind="text", outcome="ok")
        == value(before, "wqbot_callbacks_total", endpoint="app", kind="text", outcome="ok") + 1
    )
    assert (
        value(after, "wqbot_callbacks_total", endpoint="app", kind="message", outcome="refused")
        == value(before, "wqbot_callbacks_total", endpoint="app", kind="message", outcome="refused") + 1
    )
    assert (
        value(after, "wqbot_callback_seconds_count", endpoint="app")
        == value(before, "wqbot_callback_seconds_count", endpoint="app") + 2
    )


def test_every_hook_shows_up(client):
    metrics.wecom_call("/cgi-bin/message/send", 0, 0.12)
    metrics.wecom_call("/cgi-bin/message/send", 60020, 0.05)
    metrics.token_refresh("app")
    metrics.sync_run("list", "ok", {"user.created": 3, "department.deleted": 1}, seconds=4.2)
    metrics.push("sent", 5)
    metrics.push("invalid")
    metrics.webhook_delivery("retrying", attempt=1)
    metrics.webhook_delivery("delivered", attempt=2)
    for kind in ("reminder", "digest", "tile"):
        metrics.followup(kind, "sent", 2)
    metrics.followup("expired")
    text = client.get("/metrics").text
    s = samples(text)
    assert value(text, "wqbot_wecom_api_calls_total", path="/cgi-bin/message/send", errcode="60020") >= 1
    assert value(text, "wqbot_wecom_api_seconds_count", path="/cgi-bin/message/send") >= 2
    assert value(text, "wqbot_wecom_token_refreshes_total", creds="app", outcome="ok") >= 1
    assert value(text, "wqbot_sync_runs_total", mode="list", outcome="ok") >= 1
    assert value(text, "wqbot_sync_changes_total", change="user.created") >= 3
    assert value(text, "wqbot_sync_seconds_count", mode="list") >= 1
    assert value(text, "wqbot_pushes_total", status="sent") >= 5
    assert value(text, "wqbot_webhook_deliveries_total", outcome="delivered") >= 1
    assert value(text, "wqbot_webhook_retries_total") >= 1
    assert any(name == "wqbot_queue_depth" for name, _ in s)
    for kind in ("reminder", "digest", "tile"):
        assert value(text, "wqbot_followups_total", kind=kind, outcome="sent") >= 2
    assert value(text, "wqbot_followups_total", kind="expired", outcome="sent") >= 1


def test_queue_depth_is_read_when_scraped(client, queue, store):
    from bot.queue import defer, enqueue_outbox
    from store import db
    from tests.ops.test_logs import trace_probe

    with db.atomic():
        defer(trace_probe, word="waiting")
        defer(trace_probe, word="waiting too")
    enqueue_outbox()
    text = client.get("/metrics").text
    assert value(text, "wqbot_queue_depth", queue="huey") == 2
    assert value(text, "wqbot_queue_depth", queue="outbox") == 2


def test_outside_label_values_are_capped(monkeypatch):
    monkeypatch.setattr(metrics, "_kinds", set(metrics._kinds))
    metrics._kind("text")
    for i in range(metrics._MAX_KINDS + 10):
        metrics.callback_done("app", f"event:flood{i}", "ok", 0.001)
    assert metrics._kind("event:never-seen-before") == "other"
    assert metrics._kind("text") == "text"


CHILD = textwrap.dedent("""
    import sys
    from bot.observability import metrics
    n = int(sys.argv[1])
    for _ in range(n):
        metrics.callback_done("app", "event:click", "ok", 0.003)
        metrics.wecom_call("/cgi-bin/gettoken", 0, 0.2)
    metrics.push("sent", n)
""")

SCRAPER = textwrap.dedent("""
    import os, sys
    from settings import load
    from store import init_store
    init_store(os.environ["DATABASE_URL"])
    from starlette.testclient import TestClient
    from bot.app import create_app
    with TestClient(create_app(load(dotenv=None), init_store=False)) as c:
        r = c.get("/metrics")
        assert r.status_code == 200, r.status_code
        sys.stdout.write(r.text)
""")


def test_several_processes_add_up_in_multiprocess_mode(tmp_path, store):
    d = tmp_path / "prom"
    d.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(d)}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(n)], env=env) for n in (3, 4)]
    assert [c.wait(60) for c in children] == [0, 0]
    assert len(list(d.glob("*.db"))) >= 2  # one file per process
    out = subprocess.run([sys.executable, "-c", SCRAPER], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert value(text, "wqbot_callbacks_total", endpoint="app", kind="event:click", outcome="ok") == 7
    assert value(text, "wqbot_wecom_api_calls_total", path="/cgi-bin/gettoken", errcode="0") == 7
    assert value(text, "wqbot_callback_seconds_count", endpoint="app") == 7
    assert value(text, "wqbot_callback_seconds_bucket", endpoint="app", le="0.005") == 7
    assert value(text, "wqbot_pushes_total", status="sent") == 7
    assert value(text, "wqbot_queue_depth", queue="outbox") == 0


def test_prepare_multiprocess_for_several_workers(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # empty is unset; teardown also undoes what prepare sets
    assert metrics.prepare_multiprocess(1) is None
    d = metrics.prepare_multiprocess(3)
    assert d and os.path.isdir(d) and os.environ["PROMETHEUS_MULTIPROC_DIR"] == d
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "given"))
    assert metrics.prepare_multiprocess(3) == str(tmp_path / "given") and (tmp_path / "given").is_dir()


def test_wecom_client_calls_and_token_refreshes_are_counted(client, settings):
    import httpx
    import respx

    from bot.wecom import WeComClient

    api = settings.wecom_api_base
    before = client.get("/metrics").text
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{api}/cgi-bin/gettoken").mock(
            return_value=httpx.Response(200, json={"errcode": 0, "access_token": "T", "expires_in": 7200})
        )
        router.get(f"{api}/cgi-bin/user/get").mock(
            return_value=httpx.Response(200, json={"errcode": 60111, "errmsg": "userid not found"})
        )
        wecom = WeComClient(settings, sleep=lambda s: None)
        try:
            wecom.user_get("ghost")
        except Exception as e:
            assert getattr(e, "errcode", None) == 60111
    after = client.get("/metrics").text

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("wqbot_wecom_api_calls_total", path="/cgi-bin/user/get", errcode="60111") == 1
    assert delta("wqbot_wecom_api_calls_total", path="/cgi-bin/gettoken", errcode="0") == 1
    assert delta("wqbot_wecom_token_refreshes_total", creds="app", outcome="ok") == 1
    assert delta("wqbot_wecom_api_seconds_count", path="/cgi-bin/user/get") == 1


def test_a_sync_run_is_counted_with_its_changes(client, settings, store):
    import httpx
    import respx

    from bot.sync import run_sync
    from bot.wecom import reset_clients

    api = settings.wecom_api_base
    before = client.get("/metrics").text
    reset_clients()
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{api}/cgi-bin/gettoken").mock(
            return_value=httpx.Response(200, json={"errcode": 0, "access_token": "T", "expires_in": 7200})
        )
        router.get(f"{api}/cgi-bin/department/list").mock(
            return_value=httpx.Response(
                200,
                json={
                    "errcode": 0,
                    "department": [
                        {"id": 1, "name": "总部", "parentid": 0, "order": 1},
                        {"id": 2, "name": "研发", "parentid": 1, "order": 1},
                    ],
                },
            )
        )
        router.get(f"{api}/cgi-bin/user/list").mock(
            return_value=httpx.Response(
                200,
                json={
                    "errcode": 0,
                    "userlist": [
                        {"userid": "zhangsan", "name": "张三", "department": [1], "status": 1},
                        {"userid": "lisi", "name": "李四", "department": [2], "status": 1},
                    ],
                },
            )
        )
        try:
            run = run_sync(settings, trigger="test", full=True)
        except KeyError:  # the sync's own "directory sync finished" log line (reported, not ours)
            from store.directory import SyncRun

            run = SyncRun.select().order_by(SyncRun.id.desc()).first()
    reset_clients()
    assert run.status == "ok", run.as_dict()
    after = client.get("/metrics").text

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("wqbot_sync_runs_total", mode=run.mode, outcome="ok") == 1
    assert delta("wqbot_sync_changes_total", change="user.created") == 2
    assert delta("wqbot_sync_changes_total", change="department.created") == 2
    assert delta("wqbot_sync_seconds_count", mode=run.mode) == 1


def test_pushes_and_webhook_attempts_are_counted(client, store):
    import httpx
    import respx

    import settings as settings_mod
    from bot.notify import push as push_mod
    from bot.notify import webhook
    from store.notifications import Notification, NotifyRecipient, WebhookDelivery
    from tests.conftest import TEST_ENV

    before = client.get("/metrics").text
    Notification.create(id="wq-m-1", kind="notice", body="{}", fingerprint="f", status="sending")
    NotifyRecipient.insert_many(
        [
            {"notification": "wq-m-1", "key": k, "userid": k, "status": s}
            for k, s in (("a", "sent"), ("b", "sent"), ("c", "invalid"))
        ]
    ).execute()
    assert push_mod._finish("wq-m-1") == "partial"

    s = settings_mod.load(
        env={
            **TEST_ENV,
            "WEIQIAN_WEBHOOK_URL": "https://sign.example.com/hook",
            "WEIQIAN_WEBHOOK_SECRET": "hook-secret-0123456789",
        },
        dotenv=None,
    )
    WebhookDelivery.create(id="00000000-0000-4000-8000-0000000000aa", event="task.action", body="{}", next_attempt_at=0)
    with respx.mock() as router:
        router.post("https://sign.example.com/hook").mock(side_effect=[httpx.Response(503), httpx.Response(204)])
        assert webhook.attempt("00000000-0000-4000-8000-0000000000aa", s, clock=time.time, schedule=False) == "retry"
        WebhookDelivery.update(next_attempt_at=0).execute()
        assert (
            webhook.attempt("00000000-0000-4000-8000-0000000000aa", s, clock=time.time, schedule=False) == "delivered"
        )
    after = client.get("/metrics").text

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("wqbot_pushes_total", status="sent") == 2 and delta("wqbot_pushes_total", status="invalid") == 1
    assert delta("wqbot_webhook_deliveries_total", outcome="http_5xx") == 1
    assert delta("wqbot_webhook_deliveries_total", outcome="delivered") == 1
    assert delta("wqbot_webhook_retries_total") == 1
