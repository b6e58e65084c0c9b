"""Keep access tokens and secrets out of httpx's own log lines.

WeCom wants `access_token` (and gettoken `corpsecret`) in the query string, and httpx logs every
request URL at INFO ("HTTP Request: GET …?access_token=…"). A filter on httpx's and httpcore's
loggers masks credential-like query values before any handler sees the record, whatever handlers
the application (or pytest's caplog) installed.
"""

from __future__ import annotations

import logging
import re

_CRED = re.compile(r"(?i)([?&](?:access_token|corpsecret|secret|code|ticket|user_ticket|token)=)[^&\s\"'#]+")
_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def redact_url(text: str) -> str:
    return _CRED.sub(r"\1****", text)


class QueryRedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not a leak
            return True
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_FILTER = QueryRedactFilter()


def install() -> None:
    """Idempotent: attach the filter to every logger httpx and httpcore write to."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
