"""Logging: one JSON object per line (or text), with secrets redacted before anything is written.

The redaction filter masks every configured secret value, and any value of a query parameter or
field named like a credential (access_token, corpsecret, code, ticket, EncodingAESKey, …), in
the message, its arguments, extra fields and exception tracebacks.

Trace ids: each callback gets one (`new_trace_id()`); it is stored on the outbox rows the
callback defers, and set again while the huey task runs (bot.ops.tracing), so one id follows a
delivery from the HTTP request into every task it caused. Every record carries it as `trace_id`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar

_CRED_PARAM = re.compile(
    r"(?i)\b(access_token|corpsecret|corp_secret|secret|secret_key|code|auth_code|ticket|jsapi_ticket|user_ticket"
    r"|echostr|msg_signature|signature|password|passwd|token|api_token|encodingaeskey|encoding_aes_key|aes_key"
    r"|aeskey|session|csrf|authorization)"
    r"(=|\"?\s*:\s*\"?|'?\s*:\s*'?)(?!\*\*\*\*)([^&\s\"',}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+([A-Za-z0-9._~+/=-]{4,})")
_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "trace_id"}

_trace: ContextVar[str | None] = ContextVar("wqbot_trace_id", default=None)


# -- trace ids -------------------------------------------------------------------------------------
def new_trace_id() -> str:
    """Start a trace for this request/delivery: returns the id and makes it current."""
    tid = os.urandom(8).hex()  # 16 hex characters; a fifth of uuid4()'s cost (bench/callback.py)
    _trace.set(tid)
    return tid


def current_trace_id() -> str | None:
    return _trace.get()


def bind_trace(trace_id: str | None):
    """Make `trace_id` current (a queued task resuming its delivery's trace); returns a reset token."""
    return _trace.set(trace_id)


def unbind_trace(token) -> None:
    try:
        _trace.reset(token)
    except (ValueError, RuntimeError):  # set in another context (a thread pool hop): just clear
        _trace.set(None)


# -- redaction -------------------------------------------------------------------------------------
class RedactFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.secrets = tuple(sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True))

    def redact(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "****")
        text = _BEARER.sub(lambda m: m.group(1) + " ****", text)
        return _CRED_PARAM.sub(lambda m: m.group(1) + m.group(2) + "****", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record, nor print its args raw
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = ()
        for k, v in list(vars(record).items()):
            if k in _STD or k.startswith("_"):
                continue
            if isinstance(v, str):
                setattr(record, k, self.redact(v))
            elif not isinstance(v, (int, float, bool, type(None))):
                setattr(record, k, self.redact(str(v)))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        if not hasattr(record, "trace_id"):
            record.trace_id = _trace.get()
        return True


_filter: RedactFilter | None = None


def redact(text: str) -> str:
    """Mask secrets in `text` the way log lines are masked (for anything shown or stored)."""
    global _filter
    if _filter is None:
        try:
            from settings import get_settings

            _filter = RedactFilter(get_settings().secret_values)
        except Exception:
            return RedactFilter().redact(text)
    return _filter.redact(text)


# -- formatting ------------------------------------------------------------------------------------
class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace = getattr(record, "trace_id", None)
        if trace:
            out["trace_id"] = trace
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v if isinstance(v, (int, float, bool, type(None))) else str(v)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(trace)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        trace = getattr(record, "trace_id", None)
        record.trace = f" [{trace}]" if trace else ""
        return super().format(record)


def _formatter(fmt: str) -> logging.Formatter:
    return JSONFormatter() if fmt == "json" else TextFormatter()


_config: dict = {"fmt": "json", "level": "INFO", "secrets": ()}


def setup(fmt: str = "json", level: str = "INFO", secrets: tuple[str, ...] = (), stream=None) -> logging.Handler:
    global _filter
    _config.update(fmt=fmt, level=level, secrets=tuple(secrets))
    _filter = RedactFilter(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_filter)
    handler.setFormatter(_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler


def _make_filter(secrets=()):
    return RedactFilter(tuple(secrets))


def _make_formatter(fmt="json"):
    return _formatter(fmt)


def uvicorn_log_config() -> dict:
    """A logging dictConfig for uvicorn.run(log_config=…): uvicorn applies it in every worker
    process, so its own loggers (errors, tracebacks) go through the same redaction and format."""
    c = _config
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "bot.logs._make_filter", "secrets": list(c["secrets"])}},
        "formatters": {"wqbot": {"()": "bot.logs._make_formatter", "fmt": c["fmt"]}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["redact"],
                "formatter": "wqbot",
            }
        },
        "root": {"handlers": ["stderr"], "level": c["level"]},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": "WARNING"},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": "WARNING"},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        },
    }
