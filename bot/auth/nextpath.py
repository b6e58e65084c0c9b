"""`next`: where in the 微签 app a login should land. Hostile until proven otherwise.

Only a relative path inside the app is accepted: it starts with one "/", has no scheme, no
backslash, no control/format/space characters, no "#", no "." or ".." segment, and stays that
way after percent-decoding (up to four layers, so "%252F%252F" is seen for what it is) and
after Unicode compatibility folding ("／／evil" is "//evil" to some servers). Anything else
falls back to the app's home: a refused `next` is logged, never an error for the employee.
Re-quoted, it may take at most MAX_STORED bytes: it is stored with every login started.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from urllib.parse import quote, unquote

log = logging.getLogger("wqbot.auth")

MAX_LENGTH = 2048  # what is read at all
# What is kept, after re-quoting to ASCII: every anonymous login start stores its `next`, so a
# long one is an easy way to fill the store. 512 bytes is ample for an app route and its id.
MAX_STORED = 512
_DECODE_LAYERS = 4
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")
# Characters kept as they are when the accepted value is re-quoted (existing %XX escapes stay).
_SAFE = "/?&=%:+,;@!$'()*-._~"


def _bad_char(ch: str) -> bool:
    if ch == "\\":
        return True
    cat = unicodedata.category(ch)
    # Cc controls (CR/LF/TAB/NUL…), Cf format (RLO, zero-width…), Z* any space or line separator.
    return cat in ("Cc", "Cf", "Zs", "Zl", "Zp")


def _layer_ok(value: str) -> bool:
    if not value.startswith("/") or value.startswith("//") or value.startswith("/\\"):
        return False
    if any(_bad_char(ch) for ch in value):
        return False
    path = value.split("?", 1)[0]
    if ":" in path or _SCHEME.match(path.lstrip("/")):
        return False
    segments = path.split("/")
    return not any(seg in (".", "..") for seg in segments)


def safe_next(value: str | None) -> str | None:
    """The accepted path (re-quoted to plain ASCII), or None for "the app's home"."""
    if value is None:
        return None
    if not isinstance(value, str) or value in ("", "/"):
        return None
    if len(value) > MAX_LENGTH or "#" in value:
        return _refuse(value)
    layer = value
    for _ in range(_DECODE_LAYERS + 1):
        for form in (layer, unicodedata.normalize("NFKC", layer)):
            if not _layer_ok(form):
                return _refuse(value)
        decoded = unquote(layer, errors="strict") if _decodable(layer) else None
        if decoded is None:
            return _refuse(value)
        if decoded == layer:
            break
        layer = decoded
    else:
        return _refuse(value)  # still changing after several decodes: nobody needs that
    stored = quote(value, safe=_SAFE)
    if len(stored) > MAX_STORED:
        return _refuse(value)
    return stored


def stored_length(value: str) -> int:
    """How many bytes `value` takes once accepted as a `next` (compare with MAX_STORED)."""
    return len(quote(value, safe=_SAFE))


def _decodable(value: str) -> bool:
    try:
        unquote(value, errors="strict")
        return True
    except UnicodeDecodeError:
        return False


def _refuse(value: str) -> str | None:  # always None ("the home page"), so callers can `return _refuse(v)`
    log.warning("next refused, landing on the home page", extra={"next": value[:200]})
    return None
