"""What every `/api/v1` endpoint shares: bearer auth, JSON errors, body limits."""

from __future__ import annotations

import functools
import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_JSON_BODY = 1024 * 1024


class APIError(Exception):
    """Raise inside an endpoint to answer `{"error", "message"}` with `status`."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def bearer_ok(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if not token:  # setup mode: no token set means no client is let in, never an empty match
        return False
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def endpoint(fn):
    """Wrap an async `fn(request, settings)`: bearer check, APIError -> JSON, no 5xx from input."""

    @functools.wraps(fn)
    async def wrapper(request: Request):
        settings = request.app.state.settings
        if not settings.weiqian_api_token:
            return error(503, "not_configured", "WEIQIAN_API_TOKEN is not set: set it in the environment or .env")
        if not bearer_ok(request, settings.weiqian_api_token):
            return error(401, "unauthorized", "send Authorization: Bearer <WEIQIAN_API_TOKEN>")
        try:
            return await fn(request, settings)
        except APIError as e:
            return error(e.status, e.error, e.message)

    return wrapper


async def json_body(request: Request) -> dict:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BODY:
            raise APIError(413, "too_large", f"body larger than {MAX_JSON_BODY} bytes")
    data = loads(raw or b"null", "body")
    if not isinstance(data, dict):
        raise APIError(400, "invalid_json", "body must be a JSON object")
    return data


MAX_JSON_DEPTH = 32  # no request of this API nests more than 3 levels


def loads(raw: bytes | str, what: str) -> Any:
    """JSON that every later step can handle: parsed, nested at most MAX_JSON_DEPTH levels, and no
    lone surrogate (JSON's "\\ud800" is valid JSON but no text: UTF-8, hashes and the store refuse it)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise APIError(
            400, "invalid_json", f"{what} is JSON nested too deeply: at most {MAX_JSON_DEPTH} levels"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "invalid_json", f"{what} is not valid JSON") from None
    problem = json_problem(data)
    if problem:
        raise APIError(400, "invalid_json", f"{what}: {problem}")
    return data


def json_problem(data: Any) -> str | None:
    """What makes parsed JSON unusable (too deep, a lone surrogate), naming where; None when fine.
    Walks with its own stack, so no depth can make it recurse."""
    todo: list[tuple[Any, str, int]] = [(data, "", 0)]
    while todo:
        value, where, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            return f"JSON nested too deeply at {where or 'the top'}: at most {MAX_JSON_DEPTH} levels"
        if isinstance(value, str):
            if not _is_text(value):
                return f"{where or 'the value'} holds a lone surrogate (\\ud800-\\udfff): send valid Unicode text"
        elif isinstance(value, dict):
            for k, v in value.items():
                if not _is_text(k):
                    return f"a field name in {where or 'the body'} holds a lone surrogate: send valid Unicode text"
                todo.append((v, f"{where}.{k}" if where else k, depth + 1))
        elif isinstance(value, list):
            todo.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
