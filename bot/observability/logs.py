"""Logging: one JSON object per line (or text), secrets redacted before anything is written,
and nothing formatted or written on the thread that logs.

    from bot.observability import logs
    logs.setup(fmt="json", level="INFO", secrets=settings.secret_values)

`setup()` puts a `QueueHandler` on the root logger; a listener thread redacts, formats and
writes. A record costs the event loop a `getMessage()` and a queue put, not a JSON dump, a dozen
regular expressions and a write to stderr. `flush()` waits until what was logged is written.

The redaction filter masks every configured secret value, and the value of a parameter named like a
credential (access_token, corpsecret, code, ticket, EncodingAESKey, …) where it is written as one
(`name=value`, `"name": "value"`, `Authorization: …`), in the message, its arguments, extra
fields and exception tracebacks. Prose that merely mentions such a word passes through intact.

`LogThrottle` keeps a warning that a caller can repeat per request (an unknown menu key) to one
record per key per interval.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO

from settings import get_settings

from .trace import current_trace_id

_CRED_NAMES = (
    r"(access_token|corpsecret|corp_secret|secret|secret_key|code|auth_code|ticket|jsapi_ticket|user_ticket"
    r"|echostr|msg_signature|signature|password|passwd|token|api_token|encodingaeskey|encoding_aes_key|aes_key"
    r"|aeskey|session|csrf)"
)
# A credential's value is masked only where it is written as one: `name=value` (query strings,
# form bodies, KEY=VALUE lines), `"name": "value"` (JSON, Python reprs) and an `Authorization:`
# header. Prose such as "WECOM_CONTACTS_SECRET has no token: sync uses mode list" is left alone:
# the operator has to read it, and configured secret values are masked wherever they appear.
_CRED_PARAM = re.compile(r"(?i)\b" + _CRED_NAMES + r"(=)(?!\*\*\*\*)([^&\s\"',}]+)")
_CRED_FIELD = re.compile(r"(?i)([\"'])" + _CRED_NAMES + r"\1(\s*:\s*)([\"'])(?!\*\*\*\*)([^\"']+)\4")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization)(\s*:\s*)(?!\*\*\*\*)([^\r\n\"',}]+)")
_BEARER = re.compile(r"(?i)\b(bearer)\s+(?=[A-Za-z0-9._~+/=-]*\d)([A-Za-z0-9._~+/=-]{8,})")
_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "trace_id"}


# -- redaction -------------------------------------------------------------------------------------
class RedactFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.secrets = tuple(sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True))

    def redact(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "****")
        if "=" in text:
            text = _CRED_PARAM.sub(lambda m: m.group(1) + m.group(2) + "****", text)
        if ":" in text:
            text = _CRED_FIELD.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}****{m[4]}", text)
            text = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + "****", text)
        return _BEARER.sub(lambda m: m.group(1) + " ****", text)

    def _redact_structure(self, v: Any, depth: int = 0) -> Any:
        if depth > 4:
            return self.redact(str(v))
        if isinstance(v, dict):
            return {str(k): self._redact_structure(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self._redact_structure(x, depth + 1) for x in v]
        if isinstance(v, (int, float, bool, type(None))):
            return v
        return self.redact(str(v))

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
            elif isinstance(v, (list, tuple, dict)):
                setattr(record, k, self._redact_structure(v))  # stays structured in the JSON line
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
            record.trace_id = current_trace_id()
        return True


_filter: RedactFilter | None = None


def redact(text: str) -> str:
    """Mask secrets in `text` the way log lines are masked (for anything shown or stored)."""
    global _filter
    if _filter is None:
        try:
            _filter = RedactFilter(get_settings().secret_values)
        except Exception:
            return RedactFilter().redact(text)
    return _filter.redact(text)


_added: set[str] = set()  # secrets saved on the console: kept across a later setup()


def add_secrets(values: tuple[str, ...]) -> None:
    """Mask these too from now on (secrets saved on the console after start-up)."""
    global _filter
    _added.update(v for v in values if v and len(v) >= 4)
    if _filter is None:
        _filter = RedactFilter(values)
    new = tuple(v for v in _added if v not in _filter.secrets)
    if new:
        _filter.secrets = tuple(sorted(_filter.secrets + new, key=len, reverse=True))


# -- formatting ------------------------------------------------------------------------------------
class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
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
                out[k] = v if isinstance(v, (int, float, bool, type(None), list, dict)) else str(v)
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


_config: dict[str, Any] = {"fmt": "json", "level": "INFO", "secrets": ()}


class _Handoff(QueueHandler):
    """The root handler: hands a record to the listener thread. Only what must happen on the
    logging thread happens here: the message is merged with its arguments (they may change
    later) and the trace id is read from this thread's context."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        try:
            record.msg = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            record.msg = str(record.msg)
        record.args = None
        if not hasattr(record, "trace_id"):
            record.trace_id = current_trace_id()
        return record


class _Later:
    """A record the listener thread makes (`log_later`): the caller pays for this and a queue put."""

    __slots__ = ("logger", "level", "msg", "extra", "created", "trace_id")

    def __init__(self, logger: logging.Logger, level: int, msg: str, extra: dict[str, Any], trace_id: str | None):
        self.logger, self.level, self.msg, self.extra = logger, level, msg, extra
        self.created, self.trace_id = time.time(), trace_id

    def record(self) -> logging.LogRecord:
        r = self.logger.makeRecord(self.logger.name, self.level, "", 0, self.msg, (), None, extra=self.extra)
        r.created, r.msecs = self.created, (self.created % 1) * 1000
        r.relativeCreated = (self.created - logging._startTime) * 1000  # type: ignore[attr-defined]
        if "trace_id" not in self.extra:
            r.trace_id = self.trace_id
        return r


class _Listener(QueueListener):
    """The listener thread. Besides the queue it drains `_later` (log_later's records) every
    LATER_EVERY seconds: those are appended without waking it, because a wake-up per record (a
    lock, a notify, a thread switch under the GIL) cost the event loop more than the record."""

    def __init__(self, q: queue.Queue[Any], handler: logging.Handler):
        super().__init__(q, handler, respect_handler_level=False)
        self.handler = handler
        self.stopping = threading.Event()
        self.drainer: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self.drainer = threading.Thread(target=self._drain_every, name="wqbot-log-later", daemon=True)
        self.drainer.start()

    def _drain_every(self) -> None:
        while not self.stopping.wait(LATER_EVERY):
            self.drain()

    def drain(self) -> None:
        with _drain_lock:
            while _later:
                try:
                    self.handler.handle(_later.popleft().record())
                except IndexError:
                    break

    def stop(self) -> None:
        self.stopping.set()
        super().stop()
        self.drain()


LATER_EVERY = 0.1  # seconds: how late a log_later record may be written
_later: collections.deque[_Later] = collections.deque()
_drain_lock = threading.Lock()
_listener: _Listener | None = None
_queue: queue.Queue[Any] | None = None
_handoff: logging.Handler | None = None
_lock = threading.Lock()


def log_later(logger: logging.Logger, level: int, msg: str, extra: dict[str, Any]) -> None:
    """`logger.log(level, msg, extra=extra)` for a hot path (one record per callback): the LogRecord
    is made by the listener's drainer within LATER_EVERY seconds, so the calling thread (the
    event loop) pays a level check, a small object and a deque append; nothing wakes per record. Falls back to a plain log call when wqbot's handler is not the
    root's only handler (tests capturing records, a library embedding wqbot)."""
    if not logger.isEnabledFor(level):
        return
    q, handoff = _queue, _handoff
    if q is None or handoff is None or logging.root.handlers != [handoff]:
        logger.log(level, msg, extra=extra)
        return
    _later.append(_Later(logger, level, msg, extra, extra.get("trace_id") or current_trace_id()))


_write_through: Callable[[str], None] | None = None


class _Console(logging.StreamHandler):
    """stderr, unless a progress bar owns the terminal: then each line goes through the bar's
    writer (`writing_through`), which clears the bar, writes the line and draws the bar again."""

    def emit(self, record: logging.LogRecord) -> None:
        write = _write_through
        if write is None:
            super().emit(record)
            return
        try:
            write(self.format(record))
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def writing_through(write: Callable[[str], None]) -> Iterator[None]:
    """While inside, log lines are written by `write` (e.g. tqdm.write) instead of to the stream."""
    global _write_through
    flush()
    _write_through = write
    try:
        yield
    finally:
        flush()
        _write_through = None


def _writer(fmt: str, secrets: tuple[str, ...], stream: TextIO | None) -> logging.Handler:
    global _filter
    _filter = RedactFilter(tuple(secrets) + tuple(_added))
    handler = _Console(stream or sys.stderr)
    handler.addFilter(_filter)
    handler.setFormatter(_formatter(fmt))
    return handler


def _start(writer: logging.Handler) -> logging.Handler:
    """Stop the listener of an earlier setup (flushing it) and start one for `writer`; the
    handler to put on the root logger."""
    global _listener, _queue, _handoff
    with _lock:
        if _listener is not None:
            _listener.stop()
        _queue = queue.Queue()
        _listener = _Listener(_queue, writer)
        _listener.start()
        _handoff = _Handoff(_queue)
        return _handoff


# Libraries that log per request or per poll: one line per WeCom call from httpx (19,772 for one
# 20,000-member sync), huey's scheduler and two lines per task run. Kept at WARNING unless DEBUG.
CHATTY = ("httpx", "httpcore", "huey")  # "huey": its scheduler, and a line per task run; its errors still show


def quiet_libraries(level: str) -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)


def setup(
    fmt: str = "json", level: str = "INFO", secrets: tuple[str, ...] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Logging for a wqbot process: WQBOT_LOG_FORMAT, WQBOT_LOG_LEVEL (httpx and huey's
    scheduler at WARNING unless DEBUG), secrets redacted, written by a listener thread."""
    level = level.upper()
    _config.update(fmt=fmt, level=level, secrets=tuple(secrets))
    handler = _start(_writer(fmt, tuple(secrets), stream))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries(level)
    return handler


def flush() -> None:
    """Wait until every record logged so far has been written."""
    q, listener = _queue, _listener
    if q is not None and listener is not None and listener._thread is not None:
        listener.drain()
        q.join()


def _stop() -> None:
    global _listener
    with _lock:
        if _listener is not None:
            _listener.stop()  # writes what is still queued
            _listener = None


atexit.register(_stop)


def _queued_stderr(fmt: str = "json", secrets: tuple[str, ...] = ()) -> logging.Handler:
    """dictConfig factory (uvicorn applies the config in every worker process)."""
    return _start(_writer(fmt, tuple(secrets), None))


def uvicorn_log_config() -> dict[str, Any]:
    """A logging dictConfig for uvicorn.run(log_config=…): uvicorn applies it in every worker
    process, so its own loggers (errors, tracebacks) go through the same redaction and format,
    and are written by the listener thread too."""
    c = _config
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "wqbot": {
                "()": "bot.observability.logs._queued_stderr",
                "fmt": c["fmt"],
                "secrets": list(c["secrets"]),
            }
        },
        "root": {"handlers": ["wqbot"], "level": c["level"]},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True, "level": "WARNING"}
                for name in CHATTY
                if c["level"] != "DEBUG"
            },
            "uvicorn": {"handlers": [], "propagate": True, "level": "WARNING"},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": "WARNING"},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        },
    }


class LogThrottle:
    """At most one record per key per `interval` seconds, for warnings a client can repeat at
    will (each unknown menu key of a stale menu, on every click). Keys beyond `max_keys` share
    one budget, so a flood of distinct keys cannot grow memory either."""

    def __init__(self, interval: float = 60.0, max_keys: int = 1000):
        self.interval, self.max_keys = interval, max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(log now?, how many were suppressed since the last one logged for this key)."""
        if len(self._last) >= self.max_keys and key not in self._last:
            key = "\0other"
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)
