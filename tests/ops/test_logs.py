"""Logs: every secret planted in every part of a record is masked; one trace id follows a
callback into the huey task it deferred; --log-format text is readable and still redacted."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from bot.observability import logs, trace
from bot.queue import defer, enqueue_outbox, outbox_task, register_task
from store import statements
from tests.conftest import TEST_ENV
from tests.support import CallbackClient, app_crypto, message, serving

SECRET_VARS = (
    "WECOM_APP_SECRET",
    "WECOM_CONTACTS_SECRET",
    "WECOM_TOKEN",
    "WECOM_AES_KEY",
    "WECOM_CONTACTS_TOKEN",
    "WECOM_CONTACTS_AES_KEY",
    "SECRET_KEY",
    "WEIQIAN_API_TOKEN",
)


class _Flushed(io.StringIO):
    """The log stream: records are written by the listener thread, so reading waits for it."""

    def getvalue(self) -> str:
        logs.flush()
        return super().getvalue()


@pytest.fixture
def captured(settings):
    """Logging set up as `wqbot` does it, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buf = _Flushed()

    def setup(fmt="json"):
        buf.seek(0)
        buf.truncate()
        logs.setup(fmt=fmt, secrets=settings.secret_values, stream=buf)
        return buf

    yield setup
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    logs._filter = None


def plant_everything(log: logging.Logger, secrets: list[str]) -> None:
    for s in secrets:
        log.info("in the message %s", s)
        log.info("in a format argument: %s", s)
        log.warning("in an extra field", extra={"detail": f"value={s}", "data": {"nested": s}})
        try:
            raise RuntimeError(f"exception text carries {s}")
        except RuntimeError:
            log.exception("in a traceback")
        log.info("stack", stack_info=True, extra={"when": s})
    # credentials that are not configured secrets: found by their names
    log.info("GET https://qyapi.weixin.qq.com/cgi-bin/user/get?access_token=TOKEN-FROM-WECOM-123&userid=lisi")
    log.info('answer {"access_token": "TOKEN-FROM-WECOM-456", "expires_in": 7200}')
    log.info("/oauth/h5/callback?code=CODE-FROM-WECOM-789&state=abc")
    log.info("issued ticket=TICKET-abcdef0123 for lisi")
    log.info("Authorization: Bearer BEARER-TOKEN-xyz987")
    log.info('{"EncodingAESKey": "AES-KEY-IN-TEXT-555"}')


UNCONFIGURED = (
    "TOKEN-FROM-WECOM-123",
    "TOKEN-FROM-WECOM-456",
    "CODE-FROM-WECOM-789",
    "TICKET-abcdef0123",
    "BEARER-TOKEN-xyz987",
    "AES-KEY-IN-TEXT-555",
)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_is_ever_printed(captured, settings, fmt):
    secrets = [TEST_ENV[v] for v in SECRET_VARS]
    assert set(secrets) <= set(settings.secret_values)  # the filter knows every configured secret
    buf = captured(fmt)
    plant_everything(logging.getLogger("wqbot.test"), secrets)
    out = buf.getvalue()
    assert out.count("\n") >= len(secrets) * 5
    for s in secrets + list(UNCONFIGURED):
        assert s not in out, f"{s} leaked"
    # a secret with a character escaped by JSON would hide from a plain grep: check the decoded lines
    if fmt == "json":
        records = [json.loads(line) for line in out.splitlines()]
        text = json.dumps(records, ensure_ascii=False)
        for s in secrets:
            assert s not in text
        assert any("exc" in r and "RuntimeError" in r["exc"] for r in records)
        assert all(r["logger"] == "wqbot.test" for r in records)
    assert "****" in out and "userid=lisi" in out and "expires_in" in out


def test_redact_is_usable_for_stored_text(captured, settings):
    captured()
    text = f"failed with {settings.wecom_app_secret} at /x?access_token=abc&corpsecret=def"
    red = logs.redact(text)
    assert settings.wecom_app_secret not in red and "abc" not in red and "def" not in red


def test_uvicorn_logs_go_through_the_same_filter(captured, settings, monkeypatch):
    import logging.config

    captured()
    config = logs.uvicorn_log_config()
    assert config["handlers"]["wqbot"]["secrets"]
    buf = _Flushed()
    monkeypatch.setattr(sys, "stderr", buf)  # uvicorn's handler writes to stderr
    logging.config.dictConfig(config)
    try:
        raise ValueError(settings.secret_key)
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    out = buf.getvalue()
    assert "Exception in ASGI application" in out and settings.secret_key not in out
    json.loads(out.splitlines()[0])


# -- trace ids -------------------------------------------------------------------------------------
seen: list[dict] = []


@outbox_task("tests.logs.trace_probe")
def trace_probe(word: str) -> None:
    logging.getLogger("wqbot.test.task").info("probe ran", extra={"word": word})
    seen.append({"word": word, "trace": trace.current_trace_id()})


register_task(trace_probe)  # as a capability's contribute() does when the app is built


def test_a_callback_trace_id_follows_into_its_task(captured, settings, store, immediate_queue):
    from bot.callback import CallbackEndpoint
    from bot.callback.router import Router
    from store.models import Outbox

    router = Router()
    contexts = []

    @router.message("text")
    def on_text(msg, ctx):
        contexts.append(ctx)
        logging.getLogger("wqbot.test.handler").info("handler ran")
        defer(trace_probe, word=msg["Content"])

    endpoint = CallbackEndpoint(app_crypto(settings), router, settings, "app")
    buf = captured("json")
    seen.clear()
    created = []
    outer = trace.current_trace_id()
    orig = statements.insert

    def spy(model, rows, **kw):  # the outbox rows as written
        if model is Outbox:
            created.append(rows)
        return orig(model, rows, **kw)

    statements.insert = spy
    try:
        with CallbackClient(settings, serving(endpoint)) as c:
            assert c.deliver(message(MsgType="text", Content="hello", MsgId=7)) is None
            assert c.deliver(message(MsgType="text", Content="again", MsgId=8)) is None
    finally:
        statements.insert = orig
    assert [s["word"] for s in seen] == ["hello", "again"]
    first, second = contexts[0].trace_id, contexts[1].trace_id
    assert first and second and first != second
    assert [s["trace"] for s in seen] == [first, second]
    assert [r["trace_id"] for r in created] == [first, second]
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    handler_lines = [r for r in records if r["logger"] == "wqbot.test.handler"]
    task_lines = [r for r in records if r["logger"] == "wqbot.test.task"]
    assert [r["trace_id"] for r in handler_lines] == [first, second]
    assert [(r["word"], r["trace_id"]) for r in task_lines] == [("hello", first), ("again", second)]
    assert trace.current_trace_id() == outer  # the task's trace does not leak into the caller


def test_a_task_without_a_delivery_gets_its_own_trace(captured, store, immediate_queue):
    from store import db

    seen.clear()
    token = trace.bind_trace(None)
    try:
        with db.atomic():
            defer(trace_probe, word="solo")
        enqueue_outbox()
    finally:
        trace.unbind_trace(token)
    assert seen[0]["word"] == "solo" and seen[0]["trace"] and len(seen[0]["trace"]) == 16


def test_text_format_shows_the_trace(captured):
    buf = captured("text")
    token = trace.bind_trace("abcdef0123456789")
    try:
        logging.getLogger("wqbot.test").warning("hello")
    finally:
        trace.unbind_trace(token)
    line = buf.getvalue().strip()
    assert line.endswith("WARNING wqbot.test [abcdef0123456789]: hello")


@pytest.mark.parametrize(
    "text",
    [
        "✗ settings: SECRET_KEY: is required but not set (environment or .env)",
        "WECOM_CONTACTS_SECRET has no token: sync uses mode list with the app secret",
        "signature: msg_signature does not match: check WECOM_TOKEN (or WECOM_CONTACTS_TOKEN) against the Token",
        "padding: PKCS#7 padding is invalid; fix: WECOM_AES_KEY is not the EncodingAESKey at 接收消息",
        "WEIQIAN_API_TOKEN: the bearer token 微签 presents, session: renewed, code: 40029",
    ],
)
def test_operator_messages_pass_through_intact(text):
    """Credential names in prose are words, not values: nothing is masked and nothing cut short."""
    assert logs.RedactFilter(("a-configured-secret",)).redact(text) == text


def test_credentials_are_masked_in_their_three_forms_and_configured_values_anywhere():
    f = logs.RedactFilter(("a-configured-secret",))
    assert f.redact("GET /x?access_token=abc123&userid=u") == "GET /x?access_token=****&userid=u"
    assert f.redact('{"corpsecret": "abc123", "n": 1}') == '{"corpsecret": "****", "n": 1}'
    assert f.redact("{'ticket': 'T-1'}") == "{'ticket': '****'}"
    assert f.redact("Authorization: Bearer tok-123456") == "Authorization: ****"
    assert f.redact("said a-configured-secret once") == "said **** once"


def test_log_later_makes_the_record_on_the_listener_thread(captured, settings):
    """The per-callback record's fast path: the same JSON line a plain log call writes, with
    the configured level honoured and secrets still redacted."""
    buf = captured("json")
    log = logging.getLogger("wqbot.callback")
    secret = settings.secret_values[0]
    logs.log_later(log, logging.INFO, "callback accepted", {"endpoint": "app", "userid": secret, "trace_id": "t-1"})
    logs.log_later(log, logging.DEBUG, "not at INFO", {"endpoint": "app"})
    (line,) = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert line["msg"] == "callback accepted" and line["level"] == "info" and line["logger"] == "wqbot.callback"
    assert line["endpoint"] == "app" and line["trace_id"] == "t-1" and line["userid"] == "****"
    assert line["ts"].endswith("Z")
