"""What every `/api/v1` endpoint shares: bearer auth, JSON errors, body limits."""

from __future__ import annotations

import functools
import hmac
import json

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
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "invalid_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise APIError(400, "invalid_json", "body must be a JSON object")
    return data
