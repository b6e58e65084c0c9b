"""Logging: one JSON object per line (or text), with secrets redacted before anything is written.

The redaction filter masks every configured secret value, and any value of a query parameter or
field named like a credential (access_token, corpsecret, code, ticket, …)."""
from __future__ import annotations

import json
import logging
import re
import sys
import time

_CRED_PARAM = re.compile(
    r"(?i)\b(access_token|corpsecret|secret|code|ticket|user_ticket|echostr|msg_signature|password|token)"
    r"(=|\"?\s*:\s*\"?)([^&\s\"',}]+)"
)
_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class RedactFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "****")
        return _CRED_PARAM.sub(lambda m: m.group(1) + m.group(2) + "****", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = ()
        for k, v in list(vars(record).items()):
            if k not in _STD and isinstance(v, str):
                setattr(record, k, self.redact(v))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v if isinstance(v, (int, float, bool, type(None))) else str(v)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup(fmt: str = "json", level: str = "INFO", secrets: tuple[str, ...] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactFilter(secrets))
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
