"""`POST /api/v1/tickets/validate {"ticket"}`: 微签 redeems a login ticket, once (docs/api.md, "Login tickets").

200 `{"userid", "name", "departments", "account", "via"}` the first time; 410 when used,
expired, or the member was disabled since the login; 404 for a ticket never issued.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.auth import identity
from settings import Settings
from store import login as login_store

from .common import APIError, endpoint, json_body

log = logging.getLogger("wqbot.auth")

MAX_TICKET = 128


def redeem(settings: Settings, ticket: str) -> dict:

    try:
        redeemed = login_store.redeem_ticket(settings.secret_key, ticket)
    except login_store.TicketRefused as e:
        if e.reason == "unknown":
            raise APIError(
                404, "ticket_unknown", "no such ticket: pass the ticket=… value the login page received"
            ) from None
        if e.reason == "used":
            raise APIError(410, "ticket_used", "this ticket was already validated: tickets are single-use") from None
        raise APIError(
            410, "ticket_expired", f"this ticket expired: validate within {login_store.TICKET_TTL} seconds of the login"
        ) from None
    who = identity.identity(redeemed.userid)
    if who is None or not who.pop("active"):
        log.info("ticket for a member gone or disabled since the login", extra={"userid": redeemed.userid})
        raise APIError(410, "member_inactive", "the member was disabled or removed since this login")
    log.info("ticket validated", extra={"userid": redeemed.userid, "via": redeemed.via})
    return {**who, "via": redeemed.via}


@endpoint
async def validate(request: Request, settings: Settings) -> JSONResponse:
    body = await json_body(request)
    ticket = body.get("ticket")
    if not isinstance(ticket, str) or not ticket.strip():
        raise APIError(400, "invalid_ticket", 'send {"ticket": "<the ticket=… value>"}')
    if len(ticket) > MAX_TICKET:
        raise APIError(400, "invalid_ticket", f"ticket longer than {MAX_TICKET} characters")
    return JSONResponse(
        await run_in_threadpool(redeem, settings, ticket.strip()), headers={"Cache-Control": "no-store"}
    )


def routes(settings: Settings) -> list[Route]:
    return [Route("/api/v1/tickets/validate", validate, methods=["POST"])]
